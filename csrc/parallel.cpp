#include "parallel.h"

#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
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
};

// Runs the job's unclaimed chunks; returns when none is left to claim.
void run_chunks(Job& job) {
    for (int64_t i; (i = job.next.fetch_add(1)) < job.chunks;) {
        (*job.body)(job.n * i / job.chunks, job.n * (i + 1) / job.chunks);
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
        wake_.notify_all();
        const int64_t start = now();
        inside_parallel = true;
        run_chunks(*job);
        inside_parallel = false;
        const int64_t own_done = now();
        // only chunks that a worker already claimed are left: wait for them, asleep (a worker that was
        // descheduled mid-chunk needs a CPU; spinning here could take the one it would get)
        {
            std::unique_lock<std::mutex> lock(job->mutex);
            job->all_finished.wait(lock, [&] { return job->finished.load() == job->chunks; });
        }
        // Waiting longer than the caller's own share of the work took means a worker was held up without a
        // CPU: the cores are busy with other processes, where every parallel step can cost a scheduler time
        // slice. Run on the caller alone for a while.
        const int64_t waited = now() - own_done;
        if (waited > std::max<int64_t>(CONTENDED_WAIT_NS, own_done - start))
            serial_until_.store(now() + SERIAL_PERIOD_NS);
        std::lock_guard<std::mutex> lock(mutex_);
        job_.reset();   // a worker that wakes late finds no job
    }

  private:
    static constexpr int64_t CONTENDED_WAIT_NS = 1000000, SERIAL_PERIOD_NS = 500000000;   // 1 ms, 0.5 s

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
            workers_.back().detach();
        }
    }

    void worker(int rank) {
        inside_parallel = true;
        uint64_t seen = 0;
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_ != seen; });
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
    std::shared_ptr<Job> job_;
    uint64_t generation_ = 0;
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
