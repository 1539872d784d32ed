// The kernels' thread pool. parallel_for splits [0, n) into chunks that the calling thread and the pool's workers
// claim from a shared counter: the caller never waits for a worker that has not started yet (it runs the
// unclaimed chunks itself), only for chunks already running. On cores shared with other processes, where a
// woken worker may wait milliseconds for a CPU, this keeps a kernel from stalling as fork-join (OpenMP) does.
// When the caller still had to wait for a worker longer than its own share took (and over 1 ms) three times
// within 250 ms, the cores are taken by other processes: parallel_for then runs serially for half a second
// before trying threads again. On Linux the workers are kept off the CPU the caller runs on.
#pragma once
#include <cstdint>
#include <functional>

namespace darknet_py {

// body(begin, end) for consecutive ranges covering [0, n), in parallel: a few ranges per thread, each at least
// `min_chunk` long. Calls from inside a body, or while another thread's parallel_for holds the pool, run serially
// on the calling thread. An exception thrown by a body reaches the caller once every chunk has run (the first
// one, if several throw).
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t min_chunk = 1);

// Whether parallel_for is in such a serial period (callers may run their other multi-threaded work serially too).
bool contended();

// Threads parallel_for uses, the caller included (default: the CPUs this process may run on).
int num_threads();
void set_num_threads(int threads);

}  // namespace darknet_py
