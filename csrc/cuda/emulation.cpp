// The scheduler behind emulation.h: blocks over the kernels' thread pool, the threads of a block as fibers.
#include "emulation.h"

#include <sys/mman.h>
#include <unistd.h>

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "../parallel.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace dn_emu {

thread_local uint3 block_index{0, 0, 0};
thread_local dim3 block_dim;
thread_local dim3 grid_dim;

namespace {

constexpr unsigned MAX_BLOCK_THREADS = 1024;
// Per emulated thread: FIBER_STACK_BYTES reserved (touched only as used), a guard page at the bottom, the
// ThreadState at the top, the stack in between.
constexpr size_t MAX_DYNAMIC_SHARED = 48 * 1024;   // without cudaFuncSetAttribute, which we do not emulate
constexpr uint64_t POISON = ~uint64_t(0);   // what a shuffle from a lane outside the operation reads (NaN, -1)

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error("CUDA emulation: " + message); }

// Runs the threads of each block, and the blocks of each grid, from the last to the first (set_reverse_order).
std::atomic<bool> reverse_order{false};

std::string dims(dim3 d) {
    return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

// -- context switch --------------------------------------------------------------------------------------------
// x86-64: save the callee-saved registers on the current stack, store the stack pointer, load the other one,
// restore its registers and return into it. The SSE/x87 control words are not switched: kernels never change them,
// so every fiber keeps the scheduler's. A new fiber's stack is prepared so that this return lands in
// dn_emu_fiber_start with the entry function in r13 and its argument in r12.
#if defined(__x86_64__)
extern "C" void dn_emu_switch(void** save_sp, void* load_sp);
extern "C" void dn_emu_fiber_start();
asm(R"(
    .pushsection .text
    .globl dn_emu_switch
    .hidden dn_emu_switch
    .type dn_emu_switch, @function
dn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dn_emu_switch, .-dn_emu_switch

    .globl dn_emu_fiber_start
    .hidden dn_emu_fiber_start
    .type dn_emu_fiber_start, @function
dn_emu_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size dn_emu_fiber_start, .-dn_emu_fiber_start
    .popsection
)");

struct Context {
    void* sp = nullptr;
};

void make_context(Context& context, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
    const uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
    // 7 words popped by dn_emu_switch (r15, r14, r13, r12, rbx, rbp, return address): the stack is 16-byte aligned
    // after the return, as dn_emu_fiber_start's call expects.
    uint64_t* sp = reinterpret_cast<uint64_t*>(top - 16 - 56);
    sp[0] = sp[1] = sp[4] = sp[5] = 0;
    sp[2] = reinterpret_cast<uint64_t>(entry);
    sp[3] = reinterpret_cast<uint64_t>(arg);
    sp[6] = reinterpret_cast<uint64_t>(&dn_emu_fiber_start);
    context.sp = sp;
}

inline void swap_context(Context& save, Context& load) { dn_emu_switch(&save.sp, load.sp); }
#else
// Other architectures: ucontext (a signal-mask system call per switch: correct, much slower).
struct Context {
    ucontext_t uc;
};
thread_local void (*start_entry)(void*);
thread_local void* start_arg;
void start_trampoline() { start_entry(start_arg); }

void make_context(Context& context, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
    getcontext(&context.uc);
    context.uc.uc_stack.ss_sp = stack;
    context.uc.uc_stack.ss_size = bytes;
    context.uc.uc_link = nullptr;
    start_entry = entry;
    start_arg = arg;
    makecontext(&context.uc, start_trampoline, 0);
}

inline void swap_context(Context& save, Context& load) { swapcontext(&save.uc, &load.uc); }
#endif

// -- fibers and workers ----------------------------------------------------------------------------------------
enum class State : uint8_t { ready, barrier, warp, done };

struct Fiber {
    Context context;
    ThreadState registers;
    State state = State::done;
    char* stack = nullptr;      // the bottom of its stack region, taken from the worker's free stacks at its first run
    int predicate = 0;          // __syncthreads_count's argument, then the count
    WarpOp op = WarpOp::sync;   // the pending warp operation: its arguments, then the lane's result
    unsigned mask = 0;
    uint64_t value = 0;
    int param = 0;
    int width = 32;
};

// One per OS thread that runs blocks: its fibers' stacks and the running block.
struct Worker {
    std::vector<Fiber> fibers;
    char* memory = nullptr;   // the mapping: MAX_BLOCK_THREADS stack regions, aligned to FIBER_STACK_BYTES
    char* stacks = nullptr;
    size_t page = 0;
    Context scheduler;
    Fiber* running = nullptr;
    const std::function<void()>* body = nullptr;
    const char* kernel = "";
    std::exception_ptr error;
    std::vector<uint64_t> shared;   // dynamic shared memory, 8-byte units (16-byte aligned by the allocator)
    std::vector<char*> free_stacks;  // stacks of finished threads, reused first: a kernel without barriers runs
                                     // every thread of a block on one stack, which stays in the cache

    Worker() : fibers(MAX_BLOCK_THREADS), page(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
        void* mapped = mmap(nullptr, mapping_bytes(), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapped == MAP_FAILED) throw std::bad_alloc();
        memory = static_cast<char*>(mapped);
        const uintptr_t aligned = (reinterpret_cast<uintptr_t>(memory) + FIBER_STACK_BYTES - 1) & ~(FIBER_STACK_BYTES - 1);
        stacks = reinterpret_cast<char*>(aligned);
        for (unsigned i = MAX_BLOCK_THREADS; i-- > 0;) {
            mprotect(stacks + i * FIBER_STACK_BYTES, page, PROT_NONE);
            free_stacks.push_back(stacks + i * FIBER_STACK_BYTES);
        }
    }
    ~Worker() { munmap(memory, mapping_bytes()); }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    static size_t mapping_bytes() { return FIBER_STACK_BYTES * (MAX_BLOCK_THREADS + 1); }
};

void fiber_main(void* arg);

// Prepares `fiber` to start on the stack region at `region`: its ThreadState at the top, the stack below.
void start_fiber(Worker& worker, Fiber& fiber, char* region) {
    fiber.stack = region;
    *reinterpret_cast<ThreadState*>(region + FIBER_STACK_BYTES - THREAD_STATE_BYTES) = fiber.registers;
    // Regions are FIBER_STACK_BYTES apart, so the same offset in every region falls in the same cache set: with
    // hundreds of threads waiting at a barrier their stack tops would evict each other. Each region's stack starts
    // a different number of cache lines below its top.
    const size_t slot = size_t(region - worker.stacks) / FIBER_STACK_BYTES;
    const size_t stagger = (slot % 61) * 64 + (slot / 61 % 16) * 4096;
    make_context(fiber.context, region + worker.page,
                 FIBER_STACK_BYTES - THREAD_STATE_BYTES - worker.page - stagger, fiber_main, &worker);
}

Worker& this_worker() {
    thread_local std::unique_ptr<Worker> worker(new Worker());
    return *worker;
}

void fiber_main(void* arg) {
    Worker& worker = *static_cast<Worker*>(arg);
    Fiber* fiber = worker.running;
    try {
        (*worker.body)();
    } catch (...) {
        if (!worker.error) worker.error = std::current_exception();
    }
    fiber->state = State::done;
    swap_context(fiber->context, worker.scheduler);
    __builtin_unreachable();   // a finished fiber is never resumed
}

// Blocks the running fiber until the scheduler resumes it.
Fiber& suspend(State state, Worker& worker) {
    Fiber& fiber = *worker.running;
    fiber.state = state;
    swap_context(fiber.context, worker.scheduler);
    return fiber;
}

std::string block_name(const Worker& worker) {
    return std::string("kernel ") + worker.kernel + ", block " +
           dims(dim3(block_index.x, block_index.y, block_index.z));
}

// Completes the warp operations whose lanes all wait; false if none could complete.
bool resolve_warps(Worker& worker, unsigned threads) {
    bool progress = false;
    for (unsigned base = 0; base < threads; base += 32) {
        const unsigned lanes = std::min(32u, threads - base);
        const unsigned exists = lanes == 32 ? ~0u : (1u << lanes) - 1;
        Fiber* warp = worker.fibers.data() + base;
        unsigned waiting = 0, finished = 0;
        for (unsigned lane = 0; lane < lanes; ++lane) {
            if (warp[lane].state == State::warp) waiting |= 1u << lane;
            if (warp[lane].state == State::done) finished |= 1u << lane;
        }
        while (waiting) {
            const unsigned first = static_cast<unsigned>(__builtin_ctz(waiting));
            const Fiber& lead = warp[first];
            if (!(lead.mask >> first & 1u))
                fail(block_name(worker) + ": lane " + std::to_string(base + first) +
                     " calls a warp operation whose mask does not include itself");
            const unsigned group = lead.mask & exists & ~finished;
            if ((group & waiting) != group) {   // some lanes of the operation have not reached it yet
                waiting &= ~(group | (1u << first));
                continue;
            }
            uint64_t values[32];
            for (unsigned lane = 0; lane < 32; ++lane) {
                if (!(group >> lane & 1u)) continue;
                const Fiber& f = warp[lane];
                if (f.op != lead.op || f.width != lead.width || (f.mask & exists & ~finished) != group)
                    fail(block_name(worker) + ": lanes " + std::to_string(base + first) + " and " +
                         std::to_string(base + lane) + " of one warp wait at different warp operations");
                values[lane] = f.value;
            }
            const int width = lead.width;
            if (width < 1 || width > 32 || (width & (width - 1)))
                fail(block_name(worker) + ": shuffle width " + std::to_string(width) + " is not a power of 2 <= 32");
            uint64_t vote = 0;
            if (lead.op == WarpOp::ballot || lead.op == WarpOp::any || lead.op == WarpOp::all) {
                unsigned ballot = 0;
                for (unsigned lane = 0; lane < 32; ++lane)
                    if ((group >> lane & 1u) && values[lane]) ballot |= 1u << lane;
                vote = lead.op == WarpOp::ballot ? ballot : lead.op == WarpOp::any ? ballot != 0 : ballot == group;
            }
            for (unsigned lane = 0; lane < 32; ++lane) {
                if (!(group >> lane & 1u)) continue;
                Fiber& f = warp[lane];
                const unsigned segment = lane & ~unsigned(width - 1);
                unsigned source = lane;
                switch (f.op) {
                    case WarpOp::shfl: source = segment + (unsigned(f.param) & unsigned(width - 1)); break;
                    case WarpOp::shfl_up: source = lane >= segment + unsigned(f.param) ? lane - f.param : lane; break;
                    case WarpOp::shfl_down:
                        source = lane + unsigned(f.param) < segment + unsigned(width) ? lane + f.param : lane;
                        break;
                    case WarpOp::shfl_xor: {
                        const unsigned other = lane ^ unsigned(f.param);
                        source = other < segment + unsigned(width) ? other : lane;
                        break;
                    }
                    default: break;
                }
                if (f.op == WarpOp::ballot || f.op == WarpOp::any || f.op == WarpOp::all)
                    f.value = vote;
                else if (f.op != WarpOp::sync)
                    f.value = source < 32 && (group >> source & 1u) ? values[source] : POISON;
                f.state = State::ready;
            }
            waiting &= ~group;
            progress = true;
        }
    }
    return progress;
}

// Releases __syncthreads when every thread of the block waits there; false if it cannot release.
bool resolve_barrier(Worker& worker, unsigned threads, unsigned finished) {
    unsigned waiting = 0;
    int count = 0;
    for (unsigned i = 0; i < threads; ++i) {
        if (worker.fibers[i].state != State::barrier) continue;
        ++waiting;
        count += worker.fibers[i].predicate;
    }
    if (waiting == 0) return false;
    if (waiting == threads) {
        for (unsigned i = 0; i < threads; ++i) {
            worker.fibers[i].predicate = count;
            worker.fibers[i].state = State::ready;
        }
        return true;
    }
    if (waiting + finished == threads)
        fail(block_name(worker) + ": " + std::to_string(waiting) + " threads wait at __syncthreads but " +
             std::to_string(finished) + " have returned without reaching it (a barrier in divergent code)");
    return false;
}

[[noreturn]] void deadlock(const Worker& worker, unsigned threads) {
    unsigned barrier = 0, warp = 0, done = 0;
    for (unsigned i = 0; i < threads; ++i) {
        barrier += worker.fibers[i].state == State::barrier;
        warp += worker.fibers[i].state == State::warp;
        done += worker.fibers[i].state == State::done;
    }
    fail(block_name(worker) + ": barrier deadlock: " + std::to_string(barrier) + " threads wait at __syncthreads, " +
         std::to_string(warp) + " at a warp operation whose other lanes never arrive, " + std::to_string(done) +
         " have returned");
}

// Puts back the stacks of a block's unfinished threads (after an error abandoned them).
void reclaim_stacks(Worker& worker, unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
        Fiber& f = worker.fibers[i];
        if (f.stack) worker.free_stacks.push_back(f.stack);
        f.stack = nullptr;
    }
}

void run_block(Worker& worker, unsigned threads) {
    const unsigned bx = block_dim.x, bxy = block_dim.x * block_dim.y;
    for (unsigned i = 0; i < threads; ++i) {
        Fiber& f = worker.fibers[i];
        f.registers.idx = uint3{i % bx, (i % bxy) / bx, i / bxy};
        f.registers.linear = i;
        f.state = State::ready;
    }
    if (!worker.shared.empty()) std::memset(worker.shared.data(), 0xff, worker.shared.size() * 8);   // NaN
    unsigned finished = 0;
    const bool reverse = reverse_order.load(std::memory_order_relaxed);
    while (true) {
        for (unsigned k = 0; k < threads; ++k) {
            Fiber& f = worker.fibers[reverse ? threads - 1 - k : k];
            if (f.state != State::ready) continue;
            if (!f.stack) {   // first run of this thread
                start_fiber(worker, f, worker.free_stacks.back());
                worker.free_stacks.pop_back();
            }
            worker.running = &f;
            swap_context(worker.scheduler, f.context);
            if (worker.error) return reclaim_stacks(worker, threads);
            if (f.state == State::done) {
                ++finished;
                worker.free_stacks.push_back(f.stack);
                f.stack = nullptr;
            }
        }
        if (finished == threads) return;
        try {
            if (!resolve_warps(worker, threads) && !resolve_barrier(worker, threads, finished))
                deadlock(worker, threads);
        } catch (...) {
            reclaim_stacks(worker, threads);
            throw;
        }
    }
}

}  // namespace

int barrier(int predicate) {
    Worker& worker = this_worker();
    worker.running->predicate = predicate;
    return suspend(State::barrier, worker).predicate;
}

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int param, int width) {
    Worker& worker = this_worker();
    Fiber& fiber = *worker.running;
    fiber.op = op;
    fiber.mask = mask;
    fiber.value = value;
    fiber.param = param;
    fiber.width = width;
    return suspend(State::warp, worker).value;
}

unsigned active_mask() {
    Worker& worker = this_worker();
    const unsigned threads = block_dim.x * block_dim.y * block_dim.z;
    const unsigned base = worker.running->registers.linear & ~31u;
    unsigned mask = 0;
    for (unsigned lane = 0; lane < 32 && base + lane < threads; ++lane)
        if (worker.fibers[base + lane].state != State::done) mask |= 1u << lane;
    return mask;
}

void* dynamic_shared() { return this_worker().shared.data(); }

void set_reverse_order(bool reverse) { reverse_order.store(reverse); }

void trap() { fail("__trap() called"); }

void run_grid(const char* name, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    const std::string kernel = std::string("kernel ") + name;
    if (threads == 0 || threads > MAX_BLOCK_THREADS || block.x > 1024 || block.y > 1024 || block.z > 64)
        fail(kernel + ": invalid configuration: block " + dims(block) + " (" + std::to_string(threads) +
             " threads); a block holds 1 to 1024 threads, at most (1024, 1024, 64)");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
        fail(kernel + ": invalid configuration: grid " + dims(grid) +
             "; each dimension must be >= 1, x <= 2^31-1, y and z <= 65535");
    if (shared_bytes > MAX_DYNAMIC_SHARED)
        fail(kernel + ": " + std::to_string(shared_bytes) + " bytes of dynamic shared memory; at most " +
             std::to_string(MAX_DYNAMIC_SHARED) + " without an opt-in");
    const int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
    darknet_py::parallel_for(blocks, [&](int64_t begin, int64_t end) {
        Worker& worker = this_worker();
        grid_dim = grid;
        block_dim = block;
        worker.body = &body;
        worker.kernel = name;
        worker.error = nullptr;
        worker.shared.assign((shared_bytes + 7) / 8, 0);
        const bool reverse = reverse_order.load(std::memory_order_relaxed);
        for (int64_t k = begin; k < end; ++k) {
            const int64_t b = reverse ? blocks - 1 - k : k;
            block_index = uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (int64_t(grid.x) * grid.y))};
            run_block(worker, unsigned(threads));
            if (worker.error) {
                std::exception_ptr error = worker.error;
                worker.error = nullptr;
                std::rethrow_exception(error);
            }
        }
    });
}

}  // namespace dn_emu
