// matmul.cu -- SGEMM, C = A @ B (row-major, fp32), as a numbered sequence of
// kernels from naive to warptiled and double buffered, each one optimisation on
// top of the last.
//
// The sequence follows Simon Boehm's "How to optimize a CUDA matmul kernel for
// cuBLAS-like performance" (2022) and llm.c's dev/cuda numbering. Read the diff
// between kernel k and k+1: it is one idea. Every kernel takes any M, N, K
// (not only tile multiples): loads outside the matrices read zeros, stores
// outside are skipped. Indices are int: the loader rejects matrices of 2^31
// elements or more.
//
// Shapes: A (M, K), B (K, N), C (M, N), all contiguous row-major.
// Launch shapes (grid x covers N, grid y covers M, except kernel 1):
//   1        grid (ceil(M/32), ceil(N/32)),   block (32, 32)
//   2, 3     grid (ceil(N/32), ceil(M/32)),   block (32, 32)
//   4        grid (ceil(N/64), ceil(M/64)),   block (512)
//   5 .. 8   grid (ceil(N/128), ceil(M/128)), block (256)

// ============================================================================ 1
// kernel 1: naive -- one thread per C element; threadIdx.x walks down the rows,
// so a warp touches 32 different rows of A and C (uncoalesced).
extern "C" __global__ void sgemm1_naive(int M, int N, int K, const float* A, const float* B, float* C) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    const int col = blockIdx.y * blockDim.y + threadIdx.y;
    if (row < M && col < N) {
        float acc = 0.f;
        for (int k = 0; k < K; ++k) acc += A[row * K + k] * B[k * N + col];
        C[row * N + col] = acc;
    }
}

// ============================================================================ 2
// kernel 2: global-memory coalescing -- threadIdx.x walks along a row of C, so a
// warp reads one row of B and writes one row of C in 128-byte transactions
// (and reads the same A element: a broadcast).
extern "C" __global__ void sgemm2_coalesced(int M, int N, int K, const float* A, const float* B, float* C) {
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row < M && col < N) {
        float acc = 0.f;
        for (int k = 0; k < K; ++k) acc += A[row * K + k] * B[k * N + col];
        C[row * N + col] = acc;
    }
}

// ============================================================================ 3
// kernel 3: shared-memory tiling -- the block stages 32x32 tiles of A and B in
// shared memory, so each global element is loaded once per block, not 32 times.
#define S3_TILE 32
extern "C" __global__ void sgemm3_shared_tiles(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ float As[S3_TILE][S3_TILE];
    __shared__ float Bs[S3_TILE][S3_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * S3_TILE + ty, col = blockIdx.x * S3_TILE + tx;
    float acc = 0.f;
    for (int k0 = 0; k0 < K; k0 += S3_TILE) {
        // every thread loads (zero outside the matrix) and reaches both barriers
        As[ty][tx] = (row < M && k0 + tx < K) ? A[row * K + k0 + tx] : 0.f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(k0 + ty) * N + col] : 0.f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < S3_TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();  // the tiles are overwritten next iteration
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

// ============================================================================ 4
// kernel 4: 1-D blocktiling -- each thread computes S4_TM = 8 outputs down a
// column, reusing one B value from shared memory for 8 FMAs (more work per
// shared-memory load). Block tile 64x64, K step 8, 512 threads.
#define S4_BM 64
#define S4_BN 64
#define S4_BK 8
#define S4_TM 8
extern "C" __global__ void __launch_bounds__((S4_BM * S4_BN) / S4_TM)
    sgemm4_blocktile_1d(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ float As[S4_BM * S4_BK];  // (BM, BK)
    __shared__ float Bs[S4_BK * S4_BN];  // (BK, BN)
    const int tid = threadIdx.x;
    const int block_row = blockIdx.y * S4_BM, block_col = blockIdx.x * S4_BN;
    const int thread_row = tid / S4_BN, thread_col = tid % S4_BN;  // (8, 64) threads, 8 outputs each
    const int a_row = tid / S4_BK, a_col = tid % S4_BK;            // one A element per thread
    const int b_row = tid / S4_BN, b_col = tid % S4_BN;            // one B element per thread

    float acc[S4_TM] = {0.f};
    for (int k0 = 0; k0 < K; k0 += S4_BK) {
        const int ar = block_row + a_row, ak = k0 + a_col;
        As[a_row * S4_BK + a_col] = (ar < M && ak < K) ? A[ar * K + ak] : 0.f;
        const int bk = k0 + b_row, bc = block_col + b_col;
        Bs[b_row * S4_BN + b_col] = (bk < K && bc < N) ? B[bk * N + bc] : 0.f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < S4_BK; ++k) {
            const float b = Bs[k * S4_BN + thread_col];
#pragma unroll
            for (int i = 0; i < S4_TM; ++i) acc[i] += As[(thread_row * S4_TM + i) * S4_BK + k] * b;
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < S4_TM; ++i) {
        const int r = block_row + thread_row * S4_TM + i, c = block_col + thread_col;
        if (r < M && c < N) C[r * N + c] = acc[i];
    }
}

// ============================================================================ 5
// kernel 5: 2-D blocktiling -- each thread computes an 8x8 outer product from 8
// A values and 8 B values held in registers: 64 FMAs per 16 shared loads.
// Block tile 128x128, K step 8, 256 threads.
#define S5_BM 128
#define S5_BN 128
#define S5_BK 8
#define S5_TM 8
#define S5_TN 8
#define S5_THREADS ((S5_BM * S5_BN) / (S5_TM * S5_TN))
extern "C" __global__ void __launch_bounds__(S5_THREADS)
    sgemm5_blocktile_2d(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ float As[S5_BM * S5_BK];  // (BM, BK)
    __shared__ float Bs[S5_BK * S5_BN];  // (BK, BN)
    const int tid = threadIdx.x;
    const int block_row = blockIdx.y * S5_BM, block_col = blockIdx.x * S5_BN;
    const int thread_row = tid / (S5_BN / S5_TN), thread_col = tid % (S5_BN / S5_TN);  // (16, 16) threads
    const int a_row = tid / S5_BK, a_col = tid % S5_BK;  // rows a_row + 32 r: 4 A elements per thread
    const int b_row = tid / S5_BN, b_col = tid % S5_BN;  // rows b_row + 2 r:  4 B elements per thread
    constexpr int a_stride = S5_THREADS / S5_BK, b_stride = S5_THREADS / S5_BN;

    float acc[S5_TM][S5_TN] = {{0.f}};
    float reg_m[S5_TM], reg_n[S5_TN];
    for (int k0 = 0; k0 < K; k0 += S5_BK) {
#pragma unroll
        for (int r = 0; r < S5_BM; r += a_stride) {
            const int ar = block_row + a_row + r, ak = k0 + a_col;
            As[(a_row + r) * S5_BK + a_col] = (ar < M && ak < K) ? A[ar * K + ak] : 0.f;
        }
#pragma unroll
        for (int r = 0; r < S5_BK; r += b_stride) {
            const int bk = k0 + b_row + r, bc = block_col + b_col;
            Bs[(b_row + r) * S5_BN + b_col] = (bk < K && bc < N) ? B[bk * N + bc] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < S5_BK; ++k) {
#pragma unroll
            for (int i = 0; i < S5_TM; ++i) reg_m[i] = As[(thread_row * S5_TM + i) * S5_BK + k];
#pragma unroll
            for (int j = 0; j < S5_TN; ++j) reg_n[j] = Bs[k * S5_BN + thread_col * S5_TN + j];
#pragma unroll
            for (int i = 0; i < S5_TM; ++i)
#pragma unroll
                for (int j = 0; j < S5_TN; ++j) acc[i][j] += reg_m[i] * reg_n[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < S5_TM; ++i) {
        const int r = block_row + thread_row * S5_TM + i;
#pragma unroll
        for (int j = 0; j < S5_TN; ++j) {
            const int c = block_col + thread_col * S5_TN + j;
            if (r < M && c < N) C[r * N + c] = acc[i][j];
        }
    }
}

// ---------------------------------------------------------------------------- float4 helpers (6 .. 8)
// Four consecutive floats p[row, col .. col+3] of a (rows, cols) matrix with
// leading dimension ld, zeros outside it. kVec4: one 16-byte load, valid only
// when cols % 4 == 0, ld % 4 == 0 and p is 16-byte aligned (the loader checks);
// otherwise four guarded scalar loads -- the fallback for any shape.
template <bool kVec4>
__device__ __forceinline__ float4 load4(const float* p, int ld, int row, int col, int rows, int cols) {
    if (row >= rows) return make_float4(0.f, 0.f, 0.f, 0.f);
    const float* src = p + row * ld + col;
    if constexpr (kVec4) {
        return col < cols ? *reinterpret_cast<const float4*>(src) : make_float4(0.f, 0.f, 0.f, 0.f);
    } else {
        return make_float4(col < cols ? src[0] : 0.f, col + 1 < cols ? src[1] : 0.f, col + 2 < cols ? src[2] : 0.f,
                           col + 3 < cols ? src[3] : 0.f);
    }
}

template <bool kVec4>
__device__ __forceinline__ void store4(float* p, int ld, int row, int col, int rows, int cols, float4 v) {
    if (row >= rows) return;
    float* dst = p + row * ld + col;
    if constexpr (kVec4) {
        if (col < cols) *reinterpret_cast<float4*>(dst) = v;
    } else {
        if (col < cols) dst[0] = v.x;
        if (col + 1 < cols) dst[1] = v.y;
        if (col + 2 < cols) dst[2] = v.z;
        if (col + 3 < cols) dst[3] = v.w;
    }
}

// ============================================================================ 6
// kernel 6: vectorised loads -- kernel 5 with 16-byte (float4) global loads and
// stores, and A stored transposed in shared memory (As[k][m]) so the inner loop
// reads 8 A values as two float4 as well. kVec4 = false is the scalar fallback
// for shapes or pointers that float4 cannot serve; the arithmetic is the same.
#define S6_BM 128
#define S6_BN 128
#define S6_BK 8
#define S6_TM 8
#define S6_TN 8
#define S6_THREADS 256
template <bool kVec4>
__global__ void __launch_bounds__(S6_THREADS)
    sgemm6_vectorized(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ __align__(16) float As[S6_BK * S6_BM];  // (BK, BM): transposed
    __shared__ __align__(16) float Bs[S6_BK * S6_BN];  // (BK, BN)
    const int tid = threadIdx.x;
    const int block_row = blockIdx.y * S6_BM, block_col = blockIdx.x * S6_BN;
    const int thread_row = tid / (S6_BN / S6_TN), thread_col = tid % (S6_BN / S6_TN);  // (16, 16) threads
    const int a_row = tid / (S6_BK / 4), a_col4 = tid % (S6_BK / 4);  // one float4 of A per thread
    const int b_row = tid / (S6_BN / 4), b_col4 = tid % (S6_BN / 4);  // one float4 of B per thread

    float acc[S6_TM][S6_TN] = {{0.f}};
    float reg_m[S6_TM], reg_n[S6_TN];
    for (int k0 = 0; k0 < K; k0 += S6_BK) {
        const float4 a = load4<kVec4>(A, K, block_row + a_row, k0 + a_col4 * 4, M, K);
        As[(a_col4 * 4 + 0) * S6_BM + a_row] = a.x;
        As[(a_col4 * 4 + 1) * S6_BM + a_row] = a.y;
        As[(a_col4 * 4 + 2) * S6_BM + a_row] = a.z;
        As[(a_col4 * 4 + 3) * S6_BM + a_row] = a.w;
        *reinterpret_cast<float4*>(&Bs[b_row * S6_BN + b_col4 * 4]) =
            load4<kVec4>(B, N, k0 + b_row, block_col + b_col4 * 4, K, N);
        __syncthreads();
#pragma unroll
        for (int k = 0; k < S6_BK; ++k) {
#pragma unroll
            for (int i = 0; i < S6_TM; i += 4)
                *reinterpret_cast<float4*>(&reg_m[i]) =
                    *reinterpret_cast<const float4*>(&As[k * S6_BM + thread_row * S6_TM + i]);
#pragma unroll
            for (int j = 0; j < S6_TN; j += 4)
                *reinterpret_cast<float4*>(&reg_n[j]) =
                    *reinterpret_cast<const float4*>(&Bs[k * S6_BN + thread_col * S6_TN + j]);
#pragma unroll
            for (int i = 0; i < S6_TM; ++i)
#pragma unroll
                for (int j = 0; j < S6_TN; ++j) acc[i][j] += reg_m[i] * reg_n[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < S6_TM; ++i)
#pragma unroll
        for (int j = 0; j < S6_TN; j += 4)
            store4<kVec4>(C, N, block_row + thread_row * S6_TM + i, block_col + thread_col * S6_TN + j, M, N,
                          make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]));
}

// ---------------------------------------------------------------------------- warptiling (7, 8)
// Block tile 128x128, K step 8, 8 warps in a 2x4 grid, each warp owning a
// 64x32 tile of C that it sweeps as 2x2 sub-tiles of 32x16; inside a sub-tile
// each lane owns a 4x4 patch (lanes as 8 rows x 4 columns). A thread's 64
// outputs thus sit in four 4x4 patches; per k it loads 2 float4 of A and 2 of
// B that all lanes of a warp read without bank conflicts.
#define W_BM 128
#define W_BN 128
#define W_BK 8
#define W_WM 64                                  // warp tile rows
#define W_WN 32                                  // warp tile cols
#define W_WMITER 2                               // sub-tiles per warp tile, down
#define W_WNITER 2                               // sub-tiles per warp tile, across
#define W_TM 4                                   // rows per lane per sub-tile
#define W_TN 4                                   // cols per lane per sub-tile
#define W_SUBM (W_WM / W_WMITER)                 // 32
#define W_SUBN (W_WN / W_WNITER)                 // 16
#define W_LANE_COLS (W_SUBN / W_TN)              // 4 lanes across a sub-tile
#define W_THREADS (32 * (W_BM / W_WM) * (W_BN / W_WN))  // 256
#define W_A_LOADS ((W_BM * W_BK) / (4 * W_THREADS))  // float4 of A per thread per tile: 1
#define W_B_LOADS ((W_BK * W_BN) / (4 * W_THREADS))  // float4 of B per thread per tile: 1
static_assert((W_SUBM / W_TM) * (W_SUBN / W_TN) == 32, "a sub-tile must be covered by one warp's 32 lanes");
static_assert(W_A_LOADS * 4 * W_THREADS == W_BM * W_BK && W_B_LOADS * 4 * W_THREADS == W_BK * W_BN,
              "tiles must split evenly into float4 loads");

// Global -> registers: this thread's share of the A tile (rows x BK) and B tile.
template <bool kVec4>
__device__ __forceinline__ void warptile_fetch(const float* A, const float* B, int M, int N, int K, int block_row,
                                               int block_col, int k0, float4 (&a)[W_A_LOADS],
                                               float4 (&b)[W_B_LOADS]) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int l = 0; l < W_A_LOADS; ++l) {
        const int idx = tid + l * W_THREADS;  // float4 index in the (BM, BK/4) tile
        a[l] = load4<kVec4>(A, K, block_row + idx / (W_BK / 4), k0 + (idx % (W_BK / 4)) * 4, M, K);
    }
#pragma unroll
    for (int l = 0; l < W_B_LOADS; ++l) {
        const int idx = tid + l * W_THREADS;  // float4 index in the (BK, BN/4) tile
        b[l] = load4<kVec4>(B, N, k0 + idx / (W_BN / 4), block_col + (idx % (W_BN / 4)) * 4, K, N);
    }
}

// Registers -> shared memory: A transposed to (BK, BM), B as (BK, BN).
__device__ __forceinline__ void warptile_stash(float* As, float* Bs, const float4 (&a)[W_A_LOADS],
                                               const float4 (&b)[W_B_LOADS]) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int l = 0; l < W_A_LOADS; ++l) {
        const int idx = tid + l * W_THREADS;
        const int m = idx / (W_BK / 4), k = (idx % (W_BK / 4)) * 4;
        As[(k + 0) * W_BM + m] = a[l].x;
        As[(k + 1) * W_BM + m] = a[l].y;
        As[(k + 2) * W_BM + m] = a[l].z;
        As[(k + 3) * W_BM + m] = a[l].w;
    }
#pragma unroll
    for (int l = 0; l < W_B_LOADS; ++l) {
        const int idx = tid + l * W_THREADS;
        *reinterpret_cast<float4*>(&Bs[(idx / (W_BN / 4)) * W_BN + (idx % (W_BN / 4)) * 4]) = b[l];
    }
}

// One BK-deep slab of outer products from shared memory into the accumulators.
// warp_m, warp_n: the warp tile's top-left corner inside the block tile;
// lane_m, lane_n: the lane's patch inside a sub-tile.
__device__ __forceinline__ void warptile_compute(const float* As, const float* Bs, int warp_m, int warp_n,
                                                 int lane_m, int lane_n,
                                                 float (&acc)[W_WMITER * W_TM][W_WNITER * W_TN]) {
    float reg_m[W_WMITER * W_TM], reg_n[W_WNITER * W_TN];
#pragma unroll
    for (int k = 0; k < W_BK; ++k) {
#pragma unroll
        for (int wm = 0; wm < W_WMITER; ++wm)
            *reinterpret_cast<float4*>(&reg_m[wm * W_TM]) =
                *reinterpret_cast<const float4*>(&As[k * W_BM + warp_m + wm * W_SUBM + lane_m * W_TM]);
#pragma unroll
        for (int wn = 0; wn < W_WNITER; ++wn)
            *reinterpret_cast<float4*>(&reg_n[wn * W_TN]) =
                *reinterpret_cast<const float4*>(&Bs[k * W_BN + warp_n + wn * W_SUBN + lane_n * W_TN]);
#pragma unroll
        for (int i = 0; i < W_WMITER * W_TM; ++i)
#pragma unroll
            for (int j = 0; j < W_WNITER * W_TN; ++j) acc[i][j] += reg_m[i] * reg_n[j];
    }
}

template <bool kVec4>
__device__ __forceinline__ void warptile_store(float* C, int M, int N, int row0, int col0, int lane_m, int lane_n,
                                               const float (&acc)[W_WMITER * W_TM][W_WNITER * W_TN]) {
#pragma unroll
    for (int wm = 0; wm < W_WMITER; ++wm)
#pragma unroll
        for (int i = 0; i < W_TM; ++i)
#pragma unroll
            for (int wn = 0; wn < W_WNITER; ++wn) {
                const float* v = &acc[wm * W_TM + i][wn * W_TN];
                store4<kVec4>(C, N, row0 + wm * W_SUBM + lane_m * W_TM + i, col0 + wn * W_SUBN + lane_n * W_TN, M,
                              N, make_float4(v[0], v[1], v[2], v[3]));
            }
}

// ============================================================================ 7
// kernel 7: warptiling -- a third level of tiling between the block and the
// thread: each warp owns a 64x32 tile of C, so the 32 lanes of a warp read
// neighbouring shared-memory words (no bank conflicts, more broadcasts) and the
// register tile maps onto the hardware's warp schedulers.
template <bool kVec4>
__global__ void __launch_bounds__(W_THREADS)
    sgemm7_warptiling(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ __align__(16) float As[W_BK * W_BM];  // (BK, BM): transposed
    __shared__ __align__(16) float Bs[W_BK * W_BN];  // (BK, BN)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_m = (warp / (W_BN / W_WN)) * W_WM, warp_n = (warp % (W_BN / W_WN)) * W_WN;
    const int lane_m = lane / W_LANE_COLS, lane_n = lane % W_LANE_COLS;
    const int block_row = blockIdx.y * W_BM, block_col = blockIdx.x * W_BN;

    float acc[W_WMITER * W_TM][W_WNITER * W_TN] = {{0.f}};
    float4 a[W_A_LOADS], b[W_B_LOADS];
    for (int k0 = 0; k0 < K; k0 += W_BK) {
        warptile_fetch<kVec4>(A, B, M, N, K, block_row, block_col, k0, a, b);
        warptile_stash(As, Bs, a, b);
        __syncthreads();
        warptile_compute(As, Bs, warp_m, warp_n, lane_m, lane_n, acc);
        __syncthreads();
    }
    warptile_store<kVec4>(C, M, N, block_row + warp_m, block_col + warp_n, lane_m, lane_n, acc);
}

// ============================================================================ 8
// kernel 8: double buffering -- kernel 7 with two shared-memory buffers: the
// next tile's global loads are issued into registers before the current tile's
// FMAs and stashed into the other buffer after them, so memory latency hides
// behind arithmetic and one barrier per tile suffices.
template <bool kVec4>
__global__ void __launch_bounds__(W_THREADS, 2)
    sgemm8_double_buffered(int M, int N, int K, const float* A, const float* B, float* C) {
    __shared__ __align__(16) float As[2][W_BK * W_BM];
    __shared__ __align__(16) float Bs[2][W_BK * W_BN];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_m = (warp / (W_BN / W_WN)) * W_WM, warp_n = (warp % (W_BN / W_WN)) * W_WN;
    const int lane_m = lane / W_LANE_COLS, lane_n = lane % W_LANE_COLS;
    const int block_row = blockIdx.y * W_BM, block_col = blockIdx.x * W_BN;

    float acc[W_WMITER * W_TM][W_WNITER * W_TN] = {{0.f}};
    float4 a[W_A_LOADS], b[W_B_LOADS];
    warptile_fetch<kVec4>(A, B, M, N, K, block_row, block_col, 0, a, b);
    warptile_stash(As[0], Bs[0], a, b);
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += W_BK) {
        const bool has_next = k0 + W_BK < K;
        if (has_next) warptile_fetch<kVec4>(A, B, M, N, K, block_row, block_col, k0 + W_BK, a, b);
        warptile_compute(As[buf], Bs[buf], warp_m, warp_n, lane_m, lane_n, acc);
        // buffer buf ^ 1 was last read in the previous iteration, which every
        // thread finished before the barrier that ended it
        if (has_next) warptile_stash(As[buf ^ 1], Bs[buf ^ 1], a, b);
        __syncthreads();
        buf ^= 1;
    }
    warptile_store<kVec4>(C, M, N, block_row + warp_m, block_col + warp_n, lane_m, lane_n, acc);
}

#ifndef __CUDACC_RTC__
template __global__ void sgemm6_vectorized<true>(int, int, int, const float*, const float*, float*);
template __global__ void sgemm6_vectorized<false>(int, int, int, const float*, const float*, float*);
template __global__ void sgemm7_warptiling<true>(int, int, int, const float*, const float*, float*);
template __global__ void sgemm7_warptiling<false>(int, int, int, const float*, const float*, float*);
template __global__ void sgemm8_double_buffered<true>(int, int, int, const float*, const float*, float*);
template __global__ void sgemm8_double_buffered<false>(int, int, int, const float*, const float*, float*);
#endif
