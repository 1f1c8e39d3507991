// planted_bugs.cu -- three kernels, each with a bug a GPU lets through
// silently on most runs, for tests/kernels/test_cuda_emulated.py to show that
// the CPU emulator (kernels/cuda/emulate.cuh) fails on each of them loudly.
// Not part of minivl: each bug is planted on purpose.
//
// Launch each with grid (1), block (64): n = 64 floats in, 64 out.

// A race: every thread stages its element in shared memory, then reads its
// left neighbour's. With sync = 0 the barrier between the write and the read
// is missing; running the threads in index order hides it (the neighbour
// always wrote first), a shuffled order does not.
extern "C" __global__ void neighbour_without_barrier(const float* x, float* y, int sync) {
    __shared__ float staged[64];
    const int t = threadIdx.x;
    staged[t] = x[t];
    if (sync) __syncthreads();
    y[t] = staged[t > 0 ? t - 1 : 0];
}

// An uninitialised shared read: a block sum whose second stage reads all 32
// slots of the warp totals, though only blockDim.x / 32 = 2 were written. Where
// shared memory happens to start as zeros, the sum comes out right.
extern "C" __global__ void sum_reading_unwritten_slots(const float* x, float* y, int read_all_slots) {
    __shared__ float warp_totals[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float v = x[threadIdx.x];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    const int slots = read_all_slots ? 32 : static_cast<int>(blockDim.x / 32);
    float total = 0.f;
    for (int s = 0; s < slots; ++s) total += warp_totals[s];
    y[threadIdx.x] = total;
}

// A misaligned vector load: thread t reads four floats at x + offset + 4 t
// as one float4, which needs a 16-byte aligned address, so any offset that is
// not a multiple of 4 faults on a GPU ("misaligned address").
extern "C" __global__ void float4_copy(const float* x, float* y, int offset) {
    const int t = threadIdx.x;
    if (4 * t + 3 < 64 - offset) {
        const float4 v = *reinterpret_cast<const float4*>(x + offset + 4 * t);
        y[4 * t] = v.x;
        y[4 * t + 1] = v.y;
        y[4 * t + 2] = v.z;
        y[4 * t + 3] = v.w;
    }
}

// Out of bounds in shared memory: 64 threads write a 32-float tile. On a GPU
// the extra writes land in some other variable's shared memory.
extern "C" __global__ void shared_overflow(const float* x, float* y, int limit) {
    __shared__ float tile[32];
    const int t = threadIdx.x;
    if (t < limit) tile[t] = x[t];
    __syncthreads();
    y[t] = tile[t % 32];
}
