/*
 * liftcam.cu -- the CAM tail, in plain CUDA C.
 *
 * One file, two ways to use it:
 *   - NVRTC (run-time compilation, what liftcam/kernels/compiler.py does): only the
 *     extern "C" __global__ kernels below are seen (__CUDACC_RTC__ is defined); no header
 *     is included, so no include path is needed.
 *   - nvcc, linked into a C/C++ stack: the same kernels plus the extern "C" host launchers
 *     at the end of the file (liftcam_tail_multipliers, liftcam_tail_weights), which run
 *     exactly the launch sequence described here.
 *
 * Everything is float32, row-major (C-contiguous), on the device. Offsets are 64-bit.
 * The numerics are specified by liftcam/engine/tail.py (numpy); the kernels must equal it
 * to 1e-5.
 *
 * ---------------------------------------------------------------------------------------
 * THE TAIL   A (N,K,h,w), M (N,K,h,w) or weights (N,K)  ->  alpha (N,K), low (N,h,w),
 *            maps (N,H,W)
 *
 *   alpha[n,k] = sum_ij A[n,k,i,j] * M[n,k,i,j]          (LIFT-CAM; or given weights)
 *   low[n]     = ReLU( sum_k alpha[n,k] * A[n,k] )        ReLU(x) = x > 0 ? x : 0
 *   up[n]      = bilinear(low[n], H, W), half-pixel centres, no antialias (as
 *                torch interpolate(align_corners=False) / cv2.resize INTER_LINEAR)
 *   maps[n]    = (up - min up) / (max up - min up), or all zeros where that range is not
 *                a finite positive number or where low[n] is constant.
 *
 * Launch sequence (one stream; HW = H*W, hw = h*w; block = 256 threads everywhere):
 *   chunk = clamp(ceil(N*K / 1024), 8, 64) channels,  C = ceil(K / chunk)
 *   1. liftcam_channel_partial   grid (C, min(N,65535))
 *        block (c, n): for its channels k in [c*chunk, c*chunk+chunk):
 *        alpha[n,k] (one warp per channel, or read from `alpha` if has_m == 0), then
 *        partial[n,c,p] = sum_k alpha[n,k] A[n,k,p]. A and M are read from DRAM once
 *        (the second read of A is an L1/L2 hit).
 *   2. liftcam_lowres            grid min(ceil(N*hw/256), 4096)
 *        low[n,p] = ReLU(sum_c partial[n,c,p]) (fixed order: deterministic);
 *        initialises mm[n] = {+inf, 0} (min, max of up, as float bits).
 *   3. liftcam_upsample_minmax   grid (min(ceil(HW/512), 1024), min(N,65535))
 *        computes up[n] (not stored), per-block min/max, atomicMin/Max on the float bits
 *        (valid: every value is >= +0); block x == 0 also stores min/max of low[n].
 *   4. liftcam_upsample_normalise  same grid as 3
 *        recomputes up[n] bit-identically and writes maps[n] (every element).
 *   Workspace: mm (4N uint32) followed by partial (N*C*hw float32): see
 *   liftcam_tail_workspace_bytes. Outputs written: alpha (multipliers variant), low, maps.
 */

#if !defined(__CUDACC_RTC__)
#include <cuda_runtime.h>
#include <stddef.h>
#endif

#define LIFTCAM_BLOCK 256
#define LIFTCAM_MAX_CHUNK 64
#define LIFTCAM_MIN_CHUNK 8
#define LIFTCAM_TARGET_BLOCKS 1024
#define LIFTCAM_PIX_PER_BLOCK 512
#define LIFTCAM_MAX_PIX_BLOCKS 1024
#define LIFTCAM_MAX_GRID_Y 65535
#define LIFTCAM_LOWRES_MAX_BLOCKS 4096

#define LIFTCAM_POS_INF_BITS 0x7f800000u
#define LIFTCAM_FLT_MAX 3.402823466e+38f

/* The geometry both upsampling kernels start from (h,w -> H,W; grid-stride over H*W). */
#define LC_UPSAMPLE_GEOMETRY                                              \
    const float sy = (float)h / (float)H;                                 \
    const float sx = (float)w / (float)W;                                 \
    const size_t HW = (size_t)H * (size_t)W;                              \
    const size_t hw = (size_t)h * (size_t)w;                              \
    const size_t stride = (size_t)gridDim.x * (size_t)blockDim.x;

/* ------------------------------------------------------------------------ helpers */
static __device__ __forceinline__ float lc_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float lc_warp_min(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ float lc_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide min and max (blockDim.x a multiple of 32, <= 1024). Result valid in thread 0.
 * Ends with __syncthreads so the shared scratch may be reused. */
static __device__ __forceinline__ void lc_block_minmax(float* vmin, float* vmax,
                                                       float* s_min, float* s_max)
{
    const int lane = (int)(threadIdx.x & 31u);
    const int warp = (int)(threadIdx.x >> 5);
    const int nwarps = (int)(blockDim.x >> 5);
    float a = lc_warp_min(*vmin);
    float b = lc_warp_max(*vmax);
    if (lane == 0) {
        s_min[warp] = a;
        s_max[warp] = b;
    }
    __syncthreads();
    if (warp == 0) {
        a = lane < nwarps ? s_min[lane] : __uint_as_float(LIFTCAM_POS_INF_BITS);
        b = lane < nwarps ? s_max[lane] : 0.0f;
        a = lc_warp_min(a);
        b = lc_warp_max(b);
    }
    __syncthreads();
    *vmin = a;
    *vmax = b;
}

/* Half-pixel source coordinate, as torch's area_pixel_compute_source_index (float). */
static __device__ __forceinline__ void lc_source(int d, float scale, int n_in,
                                                 int* i0, int* i1, float* lam)
{
    float s = scale * ((float)d + 0.5f) - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int i = (int)s;
    if (i > n_in - 1) i = n_in - 1;
    *i0 = i;
    *i1 = (i < n_in - 1) ? i + 1 : i;
    *lam = s - (float)i;
}

static __device__ __forceinline__ float lc_bilinear(const float* __restrict__ L, int h, int w,
                                                    int y, int x, float sy, float sx)
{
    int y0, y1, x0, x1;
    float ly, lx;
    lc_source(y, sy, h, &y0, &y1, &ly);
    lc_source(x, sx, w, &x0, &x1, &lx);
    const float hy = 1.0f - ly, hx = 1.0f - lx;
    const float* r0 = L + (size_t)y0 * (size_t)w;
    const float* r1 = L + (size_t)y1 * (size_t)w;
    return hy * (hx * r0[x0] + lx * r0[x1]) + ly * (hx * r1[x0] + lx * r1[x1]);
}

/* ------------------------------------------------------------------------ tail kernels */

/* 1. alpha (when has_m) and per-chunk partial weighted sums.
 *    grid (num_chunks, gy), block multiple of 32. When has_m == 0, `alpha` holds the
 *    given weights (N,K) and M is not read (may be NULL). */
extern "C" __global__ void liftcam_channel_partial(const float* __restrict__ A,
                                                   const float* __restrict__ M,
                                                   float* alpha,
                                                   float* __restrict__ partial,
                                                   int N, int K, int hw,
                                                   int chunk_channels, int num_chunks,
                                                   int has_m)
{
    __shared__ float s_alpha[LIFTCAM_MAX_CHUNK];
    const int chunk = (int)blockIdx.x;
    const int k0 = chunk * chunk_channels;
    int nch = K - k0;
    if (nch > chunk_channels) nch = chunk_channels;
    if (nch <= 0) return; /* uniform per block */
    const int lane = (int)(threadIdx.x & 31u);
    const int warp = (int)(threadIdx.x >> 5);
    const int nwarps = (int)(blockDim.x >> 5);

    for (int n = (int)blockIdx.y; n < N; n += (int)gridDim.y) {
        const size_t row0 = (size_t)n * (size_t)K + (size_t)k0;
        const float* An = A + row0 * (size_t)hw;
        if (has_m) {
            const float* Mn = M + row0 * (size_t)hw;
            for (int kk = warp; kk < nch; kk += nwarps) {
                const float* a = An + (size_t)kk * (size_t)hw;
                const float* m = Mn + (size_t)kk * (size_t)hw;
                float s = 0.0f;
                for (int p = lane; p < hw; p += 32) s = fmaf(a[p], m[p], s);
                s = lc_warp_sum(s);
                if (lane == 0) {
                    s_alpha[kk] = s;
                    alpha[row0 + (size_t)kk] = s;
                }
            }
        } else {
            for (int kk = (int)threadIdx.x; kk < nch; kk += (int)blockDim.x)
                s_alpha[kk] = alpha[row0 + (size_t)kk];
        }
        __syncthreads();
        float* out = partial + ((size_t)n * (size_t)num_chunks + (size_t)chunk) * (size_t)hw;
        for (int p = (int)threadIdx.x; p < hw; p += (int)blockDim.x) {
            const float* a = An + p;
            float acc = 0.0f;
            for (int kk = 0; kk < nch; ++kk)
                acc = fmaf(s_alpha[kk], a[(size_t)kk * (size_t)hw], acc);
            out[p] = acc;
        }
        __syncthreads();
    }
}

/* 2. low = ReLU(sum over chunks), in a fixed order; initialises mm. 1-d grid-stride. */
extern "C" __global__ void liftcam_lowres(const float* __restrict__ partial,
                                          float* __restrict__ low,
                                          unsigned int* __restrict__ mm,
                                          int N, int hw, int num_chunks)
{
    const size_t total = (size_t)N * (size_t)hw;
    const size_t stride = (size_t)gridDim.x * (size_t)blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t n = i / (size_t)hw;
        const size_t p = i - n * (size_t)hw;
        const float* src = partial + n * (size_t)num_chunks * (size_t)hw + p;
        float s = 0.0f;
        for (int c = 0; c < num_chunks; ++c) s += src[(size_t)c * (size_t)hw];
        low[i] = s > 0.0f ? s : 0.0f;
        if (p == 0) {
            mm[4 * n + 0] = LIFTCAM_POS_INF_BITS; /* min of up */
            mm[4 * n + 1] = 0u;                   /* max of up */
        }
    }
}

/* 3. min / max of the upsampled map (not stored), and of low (block x == 0). */
extern "C" __global__ void liftcam_upsample_minmax(const float* __restrict__ low,
                                                   unsigned int* __restrict__ mm,
                                                   int N, int h, int w, int H, int W)
{
    __shared__ float s_min[32];
    __shared__ float s_max[32];
    LC_UPSAMPLE_GEOMETRY
    for (int n = (int)blockIdx.y; n < N; n += (int)gridDim.y) {
        const float* L = low + (size_t)n * hw;
        float vmin = __uint_as_float(LIFTCAM_POS_INF_BITS);
        float vmax = 0.0f;
        for (size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < HW; q += stride) {
            const int y = (int)(q / (size_t)W);
            const int x = (int)(q - (size_t)y * (size_t)W);
            const float v = lc_bilinear(L, h, w, y, x, sy, sx);
            vmin = fminf(vmin, v);
            vmax = fmaxf(vmax, v);
        }
        lc_block_minmax(&vmin, &vmax, s_min, s_max);
        if (threadIdx.x == 0) {
            atomicMin(&mm[4 * (size_t)n + 0], __float_as_uint(vmin));
            atomicMax(&mm[4 * (size_t)n + 1], __float_as_uint(vmax));
        }
        if (blockIdx.x == 0) { /* uniform per block */
            float lmin = __uint_as_float(LIFTCAM_POS_INF_BITS);
            float lmax = 0.0f;
            for (size_t p = threadIdx.x; p < hw; p += blockDim.x) {
                lmin = fminf(lmin, L[p]);
                lmax = fmaxf(lmax, L[p]);
            }
            lc_block_minmax(&lmin, &lmax, s_min, s_max);
            if (threadIdx.x == 0) {
                mm[4 * (size_t)n + 2] = __float_as_uint(lmin);
                mm[4 * (size_t)n + 3] = __float_as_uint(lmax);
            }
        }
    }
}

/* 4. maps = (up - min) / (max - min), or zeros; every element written. */
extern "C" __global__ void liftcam_upsample_normalise(const float* __restrict__ low,
                                                     const unsigned int* __restrict__ mm,
                                                     float* __restrict__ maps,
                                                     int N, int h, int w, int H, int W)
{
    LC_UPSAMPLE_GEOMETRY
    for (int n = (int)blockIdx.y; n < N; n += (int)gridDim.y) {
        const float* L = low + (size_t)n * hw;
        float* out = maps + (size_t)n * HW;
        const float mn = __uint_as_float(mm[4 * (size_t)n + 0]);
        const float mx = __uint_as_float(mm[4 * (size_t)n + 1]);
        const float lmin = __uint_as_float(mm[4 * (size_t)n + 2]);
        const float lmax = __uint_as_float(mm[4 * (size_t)n + 3]);
        const float rng = mx - mn;
        const int ok = (rng > 0.0f) && (rng <= LIFTCAM_FLT_MAX) && (lmax > lmin);
        for (size_t q = (size_t)blockIdx.x * blockDim.x + threadIdx.x; q < HW; q += stride) {
            float r = 0.0f;
            if (ok) {
                const int y = (int)(q / (size_t)W);
                const int x = (int)(q - (size_t)y * (size_t)W);
                const float v = lc_bilinear(L, h, w, y, x, sy, sx);
                r = (v - mn) / rng;
            }
            out[q] = r;
        }
    }
}

/* ------------------------------------------------------------------------ host side (nvcc) */
#if !defined(__CUDACC_RTC__)

static int lc_chunk_channels(int N, int K)
{
    long long want = ((long long)N * (long long)K + LIFTCAM_TARGET_BLOCKS - 1) /
                     LIFTCAM_TARGET_BLOCKS;
    if (want < LIFTCAM_MIN_CHUNK) want = LIFTCAM_MIN_CHUNK;
    if (want > LIFTCAM_MAX_CHUNK) want = LIFTCAM_MAX_CHUNK;
    return (int)want;
}

static unsigned int lc_min_u(long long a, long long b)
{
    return (unsigned int)(a < b ? a : b);
}

extern "C" {

/* Channels per block of kernel 1, and number of chunks (same formula as plan.py). */
int liftcam_tail_chunk_channels(int N, int K)
{
    return lc_chunk_channels(N, K);
}

int liftcam_tail_num_chunks(int N, int K)
{
    const int c = lc_chunk_channels(N, K);
    return (K + c - 1) / c;
}

/* Bytes of device workspace the tail needs (mm then partial; 256-byte aligned parts). */
size_t liftcam_tail_workspace_bytes(int N, int K, int h, int w)
{
    const size_t mm = ((size_t)N * 4u * sizeof(unsigned int) + 255u) & ~(size_t)255u;
    const size_t partial = (size_t)N * (size_t)liftcam_tail_num_chunks(N, K) * (size_t)h *
                           (size_t)w * sizeof(float);
    return mm + partial;
}

static cudaError_t lc_tail(const float* A, const float* M, float* alpha, float* low,
                           float* maps, void* workspace, int N, int K, int h, int w, int H,
                           int W, int has_m, cudaStream_t stream)
{
    if (N <= 0 || K <= 0 || h <= 0 || w <= 0 || H <= 0 || W <= 0) return cudaErrorInvalidValue;
    if (!A || !alpha || !low || !maps || !workspace || (has_m && !M)) return cudaErrorInvalidValue;
    const int chunk = lc_chunk_channels(N, K);
    const int C = (K + chunk - 1) / chunk;
    const int hw = h * w;
    const long long HW = (long long)H * (long long)W;
    unsigned int* mm = (unsigned int*)workspace;
    float* partial = (float*)((char*)workspace +
                              (((size_t)N * 4u * sizeof(unsigned int) + 255u) & ~(size_t)255u));
    const unsigned int gy = lc_min_u(N, LIFTCAM_MAX_GRID_Y);
    const dim3 block(LIFTCAM_BLOCK);

    liftcam_channel_partial<<<dim3((unsigned int)C, gy), block, 0, stream>>>(
        A, M, alpha, partial, N, K, hw, chunk, C, has_m);
    const long long lowres_blocks = ((long long)N * hw + LIFTCAM_BLOCK - 1) / LIFTCAM_BLOCK;
    liftcam_lowres<<<dim3(lc_min_u(lowres_blocks, LIFTCAM_LOWRES_MAX_BLOCKS)), block, 0, stream>>>(
        partial, low, mm, N, hw, C);
    const unsigned int gx = lc_min_u((HW + LIFTCAM_PIX_PER_BLOCK - 1) / LIFTCAM_PIX_PER_BLOCK,
                                     LIFTCAM_MAX_PIX_BLOCKS);
    liftcam_upsample_minmax<<<dim3(gx, gy), block, 0, stream>>>(low, mm, N, h, w, H, W);
    liftcam_upsample_normalise<<<dim3(gx, gy), block, 0, stream>>>(low, mm, maps, N, h, w, H, W);
    return cudaGetLastError();
}

/* LIFT-CAM tail: alpha (N,K), low (N,h,w) and maps (N,H,W) from A and M. */
cudaError_t liftcam_tail_multipliers(const float* A, const float* M, float* alpha, float* low,
                                     float* maps, void* workspace, int N, int K, int h, int w,
                                     int H, int W, cudaStream_t stream)
{
    return lc_tail(A, M, alpha, low, maps, workspace, N, K, h, w, H, W, 1, stream);
}

/* Grad-CAM-style tail: low (N,h,w) and maps (N,H,W) from A and given weights (N,K). */
cudaError_t liftcam_tail_weights(const float* A, const float* weights, float* low, float* maps,
                                 void* workspace, int N, int K, int h, int w, int H, int W,
                                 cudaStream_t stream)
{
    return lc_tail(A, (const float*)0, (float*)weights, low, maps, workspace, N, K, h, w, H, W,
                   0, stream);
}

} /* extern "C" */

#endif /* !__CUDACC_RTC__ */
