// emulate.cuh -- run the kernels of kernels/cuda/*.cu on the CPU, for machines
// without a GPU: a host C++ build of the same sources (see emulate.py).
//
// Every CUDA thread of a block becomes a fiber (ucontext) with its own stack,
// and one OS thread runs the fibers of a block in turn. A fiber runs until it
// reaches __syncthreads() or a warp-collective operation (a shuffle, ldmatrix,
// mma), then yields; a barrier opens when every live thread of the block (or
// lane of the warp) has reached it. Blocks run one after another, so
// `__shared__` can simply mean `static`. It is slow and checks things the GPU
// does not: a barrier that some threads never reach is reported as a deadlock,
// a launch must pass arguments of the kernel's exact sizes and kinds.
//
// Not a GPU: memory is sequentially consistent and floating-point results
// differ in the last bits (no FMA contraction rules). Two habits make what a
// GPU leaves to chance fail here instead (emulate_configure, from emulate.py):
// * every `__shared__` variable (a static; emulate.py finds them all in the
//   library's symbol table and lists them with emulate_add_shared) is filled
//   with 0xff bytes -- NaN as float, double or half, -1 as an integer -- when a
//   block starts, so a read of shared memory nobody wrote gives NaN, not zero;
// * between two barriers the fibers run in a shuffled order (seeded, so a
//   failure repeats), so a thread that reads what another writes without a
//   __syncthreads() in between sees the NaN fill in most runs.
// Built with sanitizers (emulate.py's `sanitize`), address and alignment
// errors -- a float4 load from an address that is not a multiple of 16 --
// stop the process with a report, as the GPU would with a fault.
#ifndef MINIVL_EMULATE_CUH
#define MINIVL_EMULATE_CUH

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------- CUDA C++ spelled as host C++
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

using std::max;
using std::min;

inline float __fmul_rn(float a, float b) { return a * b; }  // host C++ never contracts across statements
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}
inline double __longlong_as_double(long long i) {
    double f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

// ---------------------------------------------------------------- the fiber scheduler
dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

enum class State { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
    ucontext_t context;
    State state;
    dim3 index;
};

constexpr size_t kStackBytes = 64 * 1024;
inline std::vector<Fiber> fibers;
inline std::vector<char> stacks;
inline std::vector<unsigned long long> warp_words;  // 8 words per lane for warp-collective exchanges
inline ucontext_t scheduler;
inline int current = 0;
inline std::function<void()> body;
inline std::string error;
inline long long seed = 0;        // < 0: fibers run in index order
inline bool fill_shared = true;   // 0xff over shared memory at each block start
inline std::mt19937_64 shuffle;   // reseeded at every launch: a launch repeats exactly

inline int linear_thread() { return current; }
inline int lane() { return current % 32; }
inline int warp() { return current / 32; }
inline unsigned long long* words(int lane_in_warp) { return &warp_words[(warp() * 32 + lane_in_warp) * 8]; }

inline void yield(State state) {
    fibers[current].state = state;
    swapcontext(&fibers[current].context, &scheduler);
}

inline void run_fiber() {
    body();
    fibers[current].state = State::kDone;  // uc_link returns to the scheduler
}

inline std::vector<std::pair<void*, size_t>> shared_variables;  // (address, bytes)

inline void poison_shared_memory() {
    for (auto [address, bytes] : shared_variables) std::memset(address, 0xff, bytes);
}

// Run one block to completion; false (and `error`) on a deadlock.
inline bool run_block(int threads) {
    if (fill_shared) poison_shared_memory();
    std::vector<int> order(threads);
    std::iota(order.begin(), order.end(), 0);
    fibers.assign(threads, Fiber{});
    if (stacks.size() < threads * kStackBytes) stacks.resize(threads * kStackBytes);
    warp_words.assign(((threads + 31) / 32) * 32 * 8, 0ull);
    for (int t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        f.index = {static_cast<unsigned>(t % blockDim.x), static_cast<unsigned>((t / blockDim.x) % blockDim.y),
                   static_cast<unsigned>(t / (blockDim.x * blockDim.y))};
        f.state = State::kRunnable;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = &stacks[t * kStackBytes];
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &scheduler;
        makecontext(&f.context, run_fiber, 0);
    }
    for (;;) {
        if (seed >= 0) std::shuffle(order.begin(), order.end(), shuffle);
        for (int t : order) {
            if (fibers[t].state != State::kRunnable) continue;
            current = t;
            threadIdx = fibers[t].index;
            swapcontext(&scheduler, &fibers[t].context);
        }
        bool released = false, all_done = true, all_at_block_barrier = true;
        for (int w = 0; w * 32 < threads; ++w) {
            int live = 0, waiting = 0;
            for (int t = w * 32; t < std::min(threads, w * 32 + 32); ++t) {
                live += fibers[t].state != State::kDone;
                waiting += fibers[t].state == State::kAtWarpBarrier;
            }
            if (waiting && waiting == live && live == std::min(32, threads - w * 32)) {
                for (int t = w * 32; t < std::min(threads, w * 32 + 32); ++t) fibers[t].state = State::kRunnable;
                released = true;
            } else if (waiting) {
                error = "warp " + std::to_string(w) + ": a warp-collective operation that not all 32 lanes reach";
                return false;
            }
        }
        if (released) continue;
        bool any_done = false;
        for (const Fiber& f : fibers) {
            all_done &= f.state == State::kDone;
            any_done |= f.state == State::kDone;
            all_at_block_barrier &= f.state == State::kAtBlockBarrier;
        }
        if (all_done) return true;
        if (!all_at_block_barrier) {
            error = any_done ? "__syncthreads() reached after some threads of the block returned" : "deadlock";
            return false;
        }
        for (Fiber& f : fibers)
            if (f.state == State::kAtBlockBarrier) f.state = State::kRunnable;
    }
}

// ---------------------------------------------------------------- launching by name

// The kind of each kernel parameter: 'p' pointer, 'f' floating point, 'i' integer or bool.
template <typename T> constexpr char kind() {
    return std::is_pointer_v<T> ? 'p' : std::is_floating_point_v<T> ? 'f' : 'i';
}

using Launcher = std::function<bool(void**, const long long*, const char*, int)>;
inline std::map<std::string, Launcher>& registry() {
    static std::map<std::string, Launcher> kernels;
    return kernels;
}

template <typename... Args, size_t... I>
void call(void (*kernel)(Args...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<Args>*>(params[I])...);
}

// Check the arguments against the kernel's parameter list, then run the grid.
template <typename... Args> void add(const char* name, void (*kernel)(Args...)) {
    registry()[name] = [kernel, name](void** params, const long long* sizes, const char* kinds, int n) {
        constexpr int count = sizeof...(Args);
        const long long expected_sizes[] = {static_cast<long long>(sizeof(Args))..., 0};
        const char expected_kinds[] = {kind<Args>()..., 0};
        if (n != count) {
            error = std::string(name) + ": " + std::to_string(n) + " arguments for " + std::to_string(count) +
                    " parameters";
            return false;
        }
        for (int i = 0; i < count; ++i)
            if (sizes[i] != expected_sizes[i] || kinds[i] != expected_kinds[i]) {
                error = std::string(name) + ": argument " + std::to_string(i) + " is " + kinds[i] + " of " +
                        std::to_string(sizes[i]) + " bytes, the parameter is " + expected_kinds[i] + " of " +
                        std::to_string(expected_sizes[i]) + " bytes";
                return false;
            }
        body = [&] { call(kernel, params, std::index_sequence_for<Args...>{}); };
        shuffle.seed(static_cast<unsigned long long>(seed));
        const int threads = static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
        for (unsigned z = 0; z < gridDim.z; ++z)
            for (unsigned y = 0; y < gridDim.y; ++y)
                for (unsigned x = 0; x < gridDim.x; ++x) {
                    blockIdx = {x, y, z};
                    if (!run_block(threads)) return false;
                }
        return true;
    };
}

}  // namespace emu

// ---------------------------------------------------------------- device intrinsics

inline void __syncthreads() { emu::yield(emu::State::kAtBlockBarrier); }

template <typename T> T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
    static_assert(sizeof(T) <= 8, "one exchange word per lane");
    if (mask != 0xffffffffu) std::abort();  // the kernels only use full warps
    std::memcpy(emu::words(emu::lane()), &value, sizeof(T));
    emu::yield(emu::State::kAtWarpBarrier);
    T result;
    std::memcpy(&result, emu::words(emu::lane() ^ lane_mask), sizeof(T));
    emu::yield(emu::State::kAtWarpBarrier);  // every lane has read before the words are reused
    return result;
}

// 16-bit floats: IEEE half through the compiler's _Float16, bfloat16 by hand.
inline float half_bits_to_float(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return static_cast<float>(h);
}
inline unsigned short float_to_half_bits(float x) {
    const _Float16 h = static_cast<_Float16>(x);
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
inline float bf16_bits_to_float(unsigned short bits) {
    const unsigned u = static_cast<unsigned>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned short float_to_bf16_bits(float x) {  // round to nearest even
    unsigned u;
    std::memcpy(&u, &x, 4);
    return static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <bool kBf16> inline unsigned pack2(float lo, float hi) {
    if constexpr (kBf16) return float_to_bf16_bits(lo) | (static_cast<unsigned>(float_to_bf16_bits(hi)) << 16);
    return float_to_half_bits(lo) | (static_cast<unsigned>(float_to_half_bits(hi)) << 16);
}

// ldmatrix: lane l gives the address of row l % 8 of matrix l / 8 (an 8x8 tile
// of 16-bit elements); of matrix i it receives (row l/4, cols 2(l%4), +1), or
// with .trans (rows 2(l%4), +1, col l/4).
inline void ldmatrix_exchange(unsigned (&r)[4], const unsigned short* row_address, bool transpose) {
    std::memcpy(emu::words(emu::lane()), &row_address, sizeof row_address);
    emu::yield(emu::State::kAtWarpBarrier);
    const int l = emu::lane();
    for (int i = 0; i < 4; ++i) {
        auto row = [&](int k) {
            const unsigned short* p;
            std::memcpy(&p, emu::words(8 * i + k), sizeof p);
            return p;
        };
        const unsigned lo = transpose ? row(2 * (l % 4))[l / 4] : row(l / 4)[2 * (l % 4)];
        const unsigned hi = transpose ? row(2 * (l % 4) + 1)[l / 4] : row(l / 4)[2 * (l % 4) + 1];
        r[i] = lo | (hi << 16);
    }
    emu::yield(emu::State::kAtWarpBarrier);
}
inline void ldmatrix_x4(unsigned (&r)[4], const unsigned short* p) { ldmatrix_exchange(r, p, false); }
inline void ldmatrix_x4_trans(unsigned (&r)[4], const unsigned short* p) { ldmatrix_exchange(r, p, true); }

// mma.m16n8k16: d += A B, with the fragment layouts of the PTX ISA (lane = 4 g + t):
// A reg j holds (row g + 8 (j % 2), cols 2t + 8 (j / 2), +1); B reg j holds
// (rows 2t + 8 j, +1, col g); d[e] is (row g + 8 (e / 2), col 2t + e % 2).
template <bool kBf16> inline void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    unsigned* mine = reinterpret_cast<unsigned*>(emu::words(emu::lane()));
    for (int j = 0; j < 4; ++j) mine[j] = a[j];
    mine[4] = b0;
    mine[5] = b1;
    emu::yield(emu::State::kAtWarpBarrier);
    auto element = [](int lane, int reg, int high) {
        const unsigned word = reinterpret_cast<const unsigned*>(emu::words(lane))[reg];
        const unsigned short bits = static_cast<unsigned short>(high ? word >> 16 : word & 0xffffu);
        return kBf16 ? bf16_bits_to_float(bits) : half_bits_to_float(bits);
    };
    const int g = emu::lane() / 4, t = emu::lane() % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
        float sum = 0.f;
        for (int k = 0; k < 16; ++k) {
            const float a_rk = element(4 * (row % 8) + (k % 8) / 2, row / 8 + 2 * (k / 8), k % 2);
            const float b_kc = element(4 * col + (k % 8) / 2, 4 + k / 8, k % 2);
            sum += a_rk * b_kc;
        }
        d[e] += sum;
    }
    emu::yield(emu::State::kAtWarpBarrier);
}

// ---------------------------------------------------------------- the C entry point

#define MINIVL_EMULATE_ENTRY                                                                                   \
    extern "C" void emulate_configure(long long seed, int fill_shared) {                                       \
        emu::seed = seed;                                                                                      \
        emu::fill_shared = fill_shared != 0;                                                                   \
    }                                                                                                          \
    extern "C" void emulate_add_shared(void* address, size_t bytes) {                                          \
        emu::shared_variables.emplace_back(address, bytes);                                                    \
    }                                                                                                          \
    extern "C" int emulate_launch(const char* name, const unsigned* grid, const unsigned* block, void** params, \
                                  const long long* sizes, const char* kinds, int n, char* message, int length) { \
        auto found = emu::registry().find(name);                                                               \
        bool ok = false;                                                                                       \
        if (found == emu::registry().end()) {                                                                  \
            emu::error = std::string("no kernel named ") + name;                                               \
        } else if (block[0] * block[1] * block[2] > 1024 || grid[1] > 65535 || grid[2] > 65535) {              \
            emu::error = "launch shape beyond CUDA's limits";                                                  \
        } else {                                                                                               \
            gridDim = {grid[0], grid[1], grid[2]};                                                             \
            blockDim = {block[0], block[1], block[2]};                                                         \
            ok = found->second(params, sizes, kinds, n);                                                       \
        }                                                                                                      \
        if (!ok) std::snprintf(message, length, "%s", emu::error.c_str());                                     \
        return ok ? 0 : 1;                                                                                     \
    }

#endif  // MINIVL_EMULATE_CUH
