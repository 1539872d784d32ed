#include "parallel.h"

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace darknet_py {

namespace {

struct Job {
    const std::function<void(int64_t, int64_t)>* body;
    int64_t n, chunks;
    std::atomic<int64_t> next{0}, finished{0};
    std::mutex mutex;
    std::condition_variable all_finished;
    std::exception_ptr error;   // the first exception a chunk threw (mutex held), rethrown to the caller
};

// Runs the job's unclaimed chunks; returns when none is left to claim. Never throws: an exception (bad_alloc in
// a kernel's buffer) would end a worker thread, and with it the process.
void run_chunks(Job& job) {
    for (int64_t i; (i = job.next.fetch_add(1)) < job.chunks;) {
        try {
            (*job.body)(job.n * i / job.chunks, job.n * (i + 1) / job.chunks);
        } catch (...) {
            std::lock_guard<std::mutex> lock(job.mutex);
            if (!job.error) job.error = std::current_exception();
        }
        if (job.finished.fetch_add(1) + 1 == job.chunks) {
            std::lock_guard<std::mutex> lock(job.mutex);
            job.all_finished.notify_one();
        }
    }
}

thread_local bool inside_parallel = false;

class Pool {
  public:
    static Pool& instance() {
        static Pool* pool = new Pool();   // never destroyed: workers may outlive static destruction at exit
        return *pool;
    }

    int threads() const { return threads_.load(); }
    bool contended() const { return now() < serial_until_.load(); }
    void set_threads(int threads) { threads_.store(std::max(1, threads)); }

    void run(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t min_chunk) {
        const int threads = this->threads();
        const int64_t chunks = std::min<int64_t>(4 * threads, n / std::max<int64_t>(1, min_chunk));
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (threads < 2 || chunks < 2 || inside_parallel || !busy.owns_lock() || now() < serial_until_.load()) {
            body(0, n);
            return;
        }
        start_workers(threads - 1);
        auto job = std::make_shared<Job>();
        job->body = &body;
        job->n = n;
        job->chunks = chunks;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = job;
            active_ = threads - 1;
            ++generation_;
        }
#ifdef __linux__
        steer_workers();
#endif
        wake_.notify_all();
        const int64_t start = now();
        inside_parallel = true;
        run_chunks(*job);
        inside_parallel = false;
        const int64_t own_done = now();
        // only chunks that a worker already claimed are left: wait for them, spinning for a few microseconds (a
        // chunk usually ends within them, and waking from a sleep costs more), then asleep (a worker that was
        // descheduled mid-chunk needs a CPU; spinning longer could take the one it would get)
        spin_until([&] { return job->finished.load() == job->chunks; }, CALLER_SPIN_NS);
        {
            std::unique_lock<std::mutex> lock(job->mutex);
            job->all_finished.wait(lock, [&] { return job->finished.load() == job->chunks; });
        }
        // Waiting longer than the caller's own share of the work took means a worker was held up without a
        // CPU. Once in a while that happens on free cores too (OpenBLAS's idle threads spin on the other core
        // for a while after each GEMM); several such waits close together mean the cores are busy with other
        // processes, where every parallel step can cost a scheduler time slice: run on the caller alone for a
        // while.
        const int64_t done = now(), waited = done - own_done;
        if (waited > std::max<int64_t>(CONTENDED_WAIT_NS, own_done - start)) {
            if (done - long_wait_since_ > CONTENDED_WINDOW_NS) {
                long_wait_since_ = done;
                long_waits_ = 0;
            }
            if (++long_waits_ >= CONTENDED_WAITS) serial_until_.store(done + SERIAL_PERIOD_NS);
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_.reset();   // a worker that wakes late finds no job
        }
        if (job->error) std::rethrow_exception(job->error);
    }

  private:
    // a long wait: over 1 ms; CONTENDED_WAITS of them within 250 ms start a serial period of 0.5 s
    static constexpr int64_t CONTENDED_WAIT_NS = 1000000, CONTENDED_WINDOW_NS = 250000000,
                             SERIAL_PERIOD_NS = 500000000;
    static constexpr int CONTENDED_WAITS = 3;

    // Spinning before sleeping: a worker waits this long for the next job (in a forward the next layer's kernel
    // usually comes within tens of microseconds, about what waking a sleeping thread takes), the caller this long
    // for the workers' last chunks. Whole forwards on 2 cores, paired against sleeping at once: as fast or faster
    // (docs/benchmarks.md, 2026-12-06).
    static constexpr int64_t WORKER_SPIN_NS = 200000, CALLER_SPIN_NS = 20000;

    // Polls `ready` until it holds or `limit` ns have passed.
    template <class Ready>
    static void spin_until(const Ready& ready, int64_t limit) {
        const int64_t stop = now() + limit;
        while (!ready() && now() < stop) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }

    static int64_t now() {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch()).count();
    }

    Pool() {
        int cpus = int(std::thread::hardware_concurrency());
#ifdef __linux__
        cpu_set_t set;   // the CPUs this process may run on (taskset, containers), not all the machine's
        if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
#endif
        threads_.store(std::max(1, cpus));
    }

    void start_workers(int count) {
        std::lock_guard<std::mutex> lock(mutex_);
        while (int(workers_.size()) < count) {
            const int rank = int(workers_.size()) + 1;
            workers_.emplace_back([this, rank] { worker(rank); });
#ifdef __linux__
            handles_.push_back(workers_.back().native_handle());
            steered_from_ = -1;   // the new worker may run anywhere
#endif
            workers_.back().detach();
        }
    }

#ifdef __linux__
    // Keeps the workers off the caller's CPU. Otherwise a woken worker tends to be queued on the caller's CPU
    // (the other one looks busy: OpenBLAS's idle threads spin there for a while after each GEMM) and only runs
    // once the caller has done every chunk itself: measured on 2 cores, the Winograd transforms took as long
    // with 2 threads as with 1. Set again only when the caller has moved to another CPU.
    void steer_workers() {
        const int cpu = sched_getcpu();
        if (cpu < 0 || cpu == steered_from_) return;
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 2) return;
        CPU_CLR(cpu, &set);
        for (pthread_t handle : handles_) pthread_setaffinity_np(handle, sizeof set, &set);
        steered_from_ = cpu;
    }
#endif

    void worker(int rank) {
        inside_parallel = true;
        uint64_t seen = 0;
        for (;;) {
            std::shared_ptr<Job> job;
            spin_until([&] { return generation_.load() != seen; }, WORKER_SPIN_NS);
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
                seen = generation_;
                if (rank > active_) continue;   // more workers than this call's thread count
                job = job_;
            }
            if (job) run_chunks(*job);
        }
    }

    std::atomic<int> threads_{1};
    std::atomic<int64_t> serial_until_{0};   // steady-clock ns before which parallel_for runs serially
    std::mutex run_mutex_, mutex_;
    std::condition_variable wake_;
    std::vector<std::thread> workers_;
#ifdef __linux__
    std::vector<pthread_t> handles_;   // of the (detached, never ending) workers
    int steered_from_ = -1;            // the CPU the workers were last kept off (run_mutex_ held)
#endif
    std::shared_ptr<Job> job_;
    std::atomic<uint64_t> generation_{0};   // jobs posted so far (changed with mutex_ held; read by spinning workers)
    int64_t long_wait_since_ = 0;      // start of the current window of long waits (run_mutex_ held)
    int long_waits_ = 0;               // long waits in it
    int active_ = 0;
};

}  // namespace

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t min_chunk) {
    if (n <= 0) return;
    Pool::instance().run(n, body, min_chunk);
}

int num_threads() { return Pool::instance().threads(); }

bool contended() { return Pool::instance().contended(); }

void set_num_threads(int threads) { Pool::instance().set_threads(threads); }

}  // namespace darknet_py
