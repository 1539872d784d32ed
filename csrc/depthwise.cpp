#include "depthwise.h"

#include <algorithm>
#include <vector>

#include "parallel.h"
#include "scratch.h"
#include "simd.h"

namespace darknet_py {

namespace {

// Outputs per block: summed in registers over every tap before one store. 64 floats: four AVX-512 vectors.
constexpr int64_t BLOCK = 64;
// Grid floats per epilogue call: few calls, on floats still in L1.
constexpr int64_t EPILOGUE_FLOATS = 1024;

// Polyphase form of a strided, dilated window: padded input element (r, c) (input (r - offset, c - offset), zero
// outside) goes to phase (r % stride_h, c % stride_w) at (r / stride_h, c / stride_w). Tap (ky, kx) of output
// (oy, ox) reads padded (oy*stride_h + ky*dilation, ox*stride_w + kx*dilation), which is phase
// (ky*dilation % stride_h, kx*dilation % stride_w) at (oy + ky*dilation / stride_h, ox + kx*dilation / stride_w):
// in every phase a stride-1 window. Each phase is stored row-major with `row` floats per row, so with the outputs
// laid out the same way (a grid of out_h rows of `row` floats, the columns past out_w unused) every tap reads
// the grid shifted by a constant: the whole plane is one run of contiguous vector loads and multiply-adds,
// whatever the stride, dilation or width.
struct Phases {
    int64_t rows, row, size;           // rows and floats per row of a phase; floats per phase (rows * row)
    int64_t grid;                      // output grid floats, rounded up to whole blocks
    int64_t buffer;                    // floats of the phases plus the reads past them (grid blocks past out_w)
    int64_t reach;                     // the furthest a tap reads within its phase, relative to the grid index
    std::vector<int64_t> tap;          // where tap ky*kernel + kx reads, relative to the output's grid index
};

Phases phases_of(const WindowGeometry& g) {
    const int64_t reach = (g.kernel - 1) * g.dilation;
    Phases p;
    p.rows = g.out_h + reach / g.stride_h;
    p.row = g.out_w + reach / g.stride_w;
    p.size = p.rows * p.row;
    p.grid = (g.out_h * p.row + BLOCK - 1) / BLOCK * BLOCK;
    p.tap.resize(g.kernel * g.kernel);
    p.reach = 0;
    int64_t furthest = 0;
    for (int64_t ky = 0; ky < g.kernel; ++ky) {
        for (int64_t kx = 0; kx < g.kernel; ++kx) {
            const int64_t dy = ky * g.dilation, dx = kx * g.dilation;
            const int64_t phase = (dy % g.stride_h) * g.stride_w + dx % g.stride_w;
            const int64_t within = dy / g.stride_h * p.row + dx / g.stride_w;
            p.tap[ky * g.kernel + kx] = phase * p.size + within;
            p.reach = std::max(p.reach, within);
            furthest = std::max(furthest, p.tap[ky * g.kernel + kx]);
        }
    }
    p.buffer = std::max(g.stride_h * g.stride_w * p.size, furthest + p.grid);
    return p;
}

// Short runs (a row of a plane) copied and zeroed a vector at a time, inline: a libc call per row would cost as
// much as the row.
template <class V>
DARKNET_PY_INLINE void copy_run(float* __restrict dst, const float* __restrict src, int64_t n) {
    int64_t i = 0;
    for (; i + lanes<V>() <= n; i += lanes<V>()) store(dst + i, load<V>(src + i));
    for (; i < n; ++i) dst[i] = src[i];
}

template <class V>
DARKNET_PY_INLINE void zero_run(float* dst, int64_t n) {
    int64_t i = 0;
    for (; i + lanes<V>() <= n; i += lanes<V>()) store(dst + i, V{});
    for (; i < n; ++i) dst[i] = 0.0f;
}

// Padded input row y (zeros outside the plane) into its stride_w column phases, `row` floats each from `phase0`
// on, `phase_size` apart: phase b's column c is padded column c * stride_w + b, input column c * stride_w + b -
// offset. Stride 1: the padded row is the phase. Otherwise the phases are gathered from the input row itself (no
// padded copy of the row in between).
template <class V>
DARKNET_PY_INLINE void split_row(const float* __restrict plane, int64_t y, const WindowGeometry& g, int64_t row,
                                 float* __restrict phase0, int64_t phase_size) {
    if (y < 0 || y >= g.height) {
        for (int64_t b = 0; b < g.stride_w; ++b) zero_run<V>(phase0 + b * phase_size, row);
        return;
    }
    const float* in = plane + y * g.width;
    if (g.stride_w == 1) {
        const int64_t first = std::min(g.offset, row), last = std::clamp(g.offset + g.width, first, row);
        zero_run<V>(phase0, first);
        copy_run<V>(phase0 + first, in + first - g.offset, last - first);
        zero_run<V>(phase0 + last, row - last);
        return;
    }
    const int64_t s = g.stride_w;
    const auto columns = [&](int64_t from, int64_t to) {   // one by one, zero outside the row
        for (int64_t b = 0; b < s; ++b)
            for (int64_t c = from; c < to; ++c) {
                const int64_t x = c * s + b - g.offset;
                phase0[b * phase_size + c] = x >= 0 && x < g.width ? in[x] : 0.0f;
            }
    };
    if (s != 2) {
        columns(0, row);
        return;
    }
    // stride 2: columns [inner_begin, inner_end) read inside the row in both phases, a constant stride the compiler
    // deinterleaves with vector permutes; the columns at the edges one by one
    const int64_t span = g.width + g.offset - s;
    const int64_t inner_begin = std::min(row, (g.offset + s - 1) / s);
    const int64_t inner_end = span < 0 ? inner_begin : std::clamp(span / s + 1, inner_begin, row);
    columns(0, inner_begin);
    columns(inner_end, row);
    const float* first = in + inner_begin * s - g.offset;
    float* odd = phase0 + phase_size;
    for (int64_t c = 0; c < inner_end - inner_begin; ++c) {
        phase0[inner_begin + c] = first[2 * c];
        odd[inner_begin + c] = first[2 * c + 1];
    }
}

// Planes [begin, end) of x into y, with the buffers of one thread: the phases of the plane, then its output grid
// (grid[j] = sum over taps of w[t] * phases[j + tap[t]]), the epilogue and the copy of the output rows following a
// few blocks behind. The phases are filled row by row just ahead of the blocks that read them, so that
// the rows a block reads were written moments before and are still in L1 (a whole plane's phases, filled first,
// outgrow L1 from about 100x100 on, and every tap's load then came from L2).
struct DepthwisePlanes {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* x, const float* weights, float* y, int64_t begin, int64_t end,
                                      int64_t channels, const WindowGeometry* geometry, const Phases* phases,
                                      float* buffer, const float* scale, const float* shift, Activation act) {
        const WindowGeometry& g = *geometry;
        const Phases& p = *phases;
        constexpr int64_t W = lanes<V>(), NV = BLOCK / W;
        const int64_t taps = g.kernel * g.kernel, in_plane = g.height * g.width, out_plane = g.out_h * g.out_w;
        const int64_t padded_rows = g.stride_h * p.rows;
        float* grid = buffer + p.buffer;
        float* weight_vectors = grid + p.grid;   // each tap's weight in every lane: one load per tap and block
        const int64_t* tap = p.tap.data();
        for (int64_t plane = begin; plane < end; ++plane) {
            const int64_t c = plane % channels;
            const float* in = x + plane * in_plane;
            for (int64_t t = 0; t < taps; ++t) store(weight_vectors + t * W, splat<V>(weights[c * taps + t]));
            float* out = y + plane * out_plane;
            // the next plane's input is fetched while this one is computed: its first read (from L3 or memory,
            // where the layer before left it) would otherwise stall the copy into the phases
            const char* next = reinterpret_cast<const char*>(in + in_plane);
            const int64_t lines = plane + 1 < end ? in_plane * int64_t(sizeof(float)) / 64 : 0;
            const int64_t per_block = (lines + p.grid / BLOCK - 1) / (p.grid / BLOCK);
            // prefetched lines, padded input rows split (their phase rows hold within-phase indices below
            // `ready`), grid floats through the epilogue, output rows written
            int64_t fetched = 0, filled = 0, ready = 0, activated = 0, written = 0;
            for (int64_t j = 0; j < p.grid; j += BLOCK) {
                // every phase row this block's taps reach (within-phase indices up to j + BLOCK - 1 + reach): the
                // stride_h padded input rows of each
                for (; ready <= j + BLOCK - 1 + p.reach && filled < padded_rows; ready += p.row)
                    for (int64_t phase = 0; phase < g.stride_h; ++phase, ++filled)   // phase row ready / p.row
                        split_row<V>(in, filled - g.offset, g, p.row,
                                     buffer + phase * g.stride_w * p.size + ready, p.size);
                for (const int64_t stop = std::min(lines, fetched + per_block); fetched < stop; ++fetched)
                    __builtin_prefetch(next + fetched * 64);
                V sum[NV] = {};
                for (int64_t t = 0; t < taps; ++t) {
                    const float* src = buffer + tap[t] + j;
                    const V wv = load<V>(weight_vectors + t * W);
#pragma GCC unroll 16
                    for (int64_t v = 0; v < NV; ++v) sum[v] += wv * load<V>(src + v * W);
                }
#pragma GCC unroll 16
                for (int64_t v = 0; v < NV; ++v) store(grid + j + v * W, sum[v]);
                // every EPILOGUE_FLOATS summed (and at the end): the epilogue on them in place, whole vectors, the
                // unused columns included (per row, the last columns of a narrow row would go one by one), then
                // the output rows they complete copied out
                const int64_t summed = j + BLOCK;
                if (summed - activated < EPILOGUE_FLOATS && summed < p.grid) continue;
                if (shift) affine_activate_plane(grid + activated, summed - activated, scale ? scale[c] : 1.0f,
                                                 shift[c], act);
                activated = summed;
                for (; written < g.out_h && written * p.row + g.out_w <= summed; ++written)
                    copy_run<V>(out + written * g.out_w, grid + written * p.row, g.out_w);
            }
        }
    }
};

// Small planes, where most of a grid's vectors would be unused columns: lanes<V>() channels at once, each vector
// holding one position of those channels. Per block of CHANNEL_BLOCK channels of one image: their padded windows
// interleaved (position-major, channel fastest) and their weights likewise, the outputs summed tap by tap for
// up to OUTPUT_RUN positions at a time (one load of a tap's weights serves them all), the epilogue applied to
// the interleaved sums, then written back to the channels' planes. Interleaving and writing back go lanes<V>()
// positions of lanes<V>() channels at a time, through an in-register transpose.
constexpr int64_t CHANNEL_BLOCK = 16, OUTPUT_RUN = 8;   // row_outputs' switch covers the rest of a row

struct ChannelWindow {
    int64_t rows, cols;   // the padded extent the windows reach: element (r, c) is input (r - offset, c - offset)
};

ChannelWindow channel_window(const WindowGeometry& g) {
    return {(g.out_h - 1) * g.stride_h + (g.kernel - 1) * g.dilation + 1,
            (g.out_w - 1) * g.stride_w + (g.kernel - 1) * g.dilation + 1};
}

// r[i][j] becomes r[j][i] (lanes<V>() vectors): log2(lanes) rounds, each swapping the off-diagonal h x h blocks of
// every 2h x 2h block with two-vector shuffles.
template <class V>
DARKNET_PY_INLINE void transpose(V* r) {
    constexpr int64_t L = lanes<V>();
#pragma GCC unroll 8
    for (int64_t h = L / 2; h >= 1; h /= 2) {
        IntOf<V> low, high;
#pragma GCC unroll 16
        for (int64_t j = 0; j < L; ++j) {
            low[j] = static_cast<int32_t>(j & h ? L + j - h : j);
            high[j] = static_cast<int32_t>(j & h ? L + j : j + h);
        }
#pragma GCC unroll 16
        for (int64_t i = 0; i < L; ++i) {
            if (i & h) continue;
            const V a = r[i], b = r[i + h];
            r[i] = __builtin_shuffle(a, b, low);
            r[i + h] = __builtin_shuffle(a, b, high);
        }
    }
}

// n <= lanes<V>() floats from p, zeros after them
template <class V>
DARKNET_PY_INLINE V load_part(const float* p, int64_t n) {
    if (n == lanes<V>()) return load<V>(p);
    V v = {};
    for (int64_t i = 0; i < n; ++i) v[i] = p[i];
    return v;
}

template <class V>
DARKNET_PY_INLINE void store_part(float* p, V v, int64_t n) {
    if (n == lanes<V>()) return store(p, v);
    for (int64_t i = 0; i < n; ++i) p[i] = v[i];
}

// put(i, v) for i < n in order, v holding value i of each of `count` <= lanes<V>() arrays of n floats (src, src +
// n, ...; zeros in the other lanes): lanes<V>() values of each at a time, transposed in registers.
template <class V, class Put>
DARKNET_PY_INLINE void interleave(const float* src, int64_t n, int64_t count, const Put& put) {
    constexpr int64_t L = lanes<V>();
    for (int64_t i = 0; i < n; i += L) {
        const int64_t part = std::min(L, n - i);
        V v[L];
#pragma GCC unroll 16
        for (int64_t l = 0; l < L; ++l) v[l] = l < count ? load_part<V>(src + l * n + i, part) : V{};
        transpose(v);
        for (int64_t t = 0; t < part; ++t) put(i + t, v[t]);
    }
}

struct DepthwiseChannels {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* x, const float* weights, float* y, int64_t begin, int64_t end,
                                      int64_t channels, const WindowGeometry* geometry, float* buffer,
                                      const float* scale, const float* shift, Activation act) {
        const WindowGeometry& g = *geometry;
        constexpr int64_t L = lanes<V>();
        const ChannelWindow e = channel_window(g);
        const int64_t taps = g.kernel * g.kernel, in_plane = g.height * g.width, out_plane = g.out_h * g.out_w;
        const int64_t blocks = (channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
        float* window = buffer;                    // e.rows * e.cols positions of L channels
        float* w = window + e.rows * e.cols * L;   // taps x L
        float* out = w + taps * L;                 // out_plane positions x L (rounded up to whole transposes)
        // the input rows and columns the windows reach
        const int64_t rows_in = std::min(g.height, e.rows - g.offset), cols_in = std::min(g.width, e.cols - g.offset);
        for (int64_t unit = begin; unit < end; ++unit) {
            const int64_t image = unit / blocks, block_end = std::min(channels, (unit % blocks + 1) * CHANNEL_BLOCK);
            for (int64_t c0 = unit % blocks * CHANNEL_BLOCK; c0 < block_end; c0 += L) {
                const int64_t count = std::min(L, block_end - c0);
                const float* planes = x + (image * channels + c0) * in_plane;
                zero_run<V>(window, e.rows * e.cols * L);
                interleave<V>(weights + c0 * taps, taps, count, [&](int64_t t, V v) { store(w + t * L, v); });
                // each input position's vector of the L channels into its window position (the rows and columns
                // the windows reach)
                int64_t iy = 0, ix = 0;
                interleave<V>(planes, in_plane, count, [&](int64_t, V v) {
                    if (iy < rows_in && ix < cols_in) store(window + ((iy + g.offset) * e.cols + ix + g.offset) * L, v);
                    if (++ix == g.width) ix = 0, ++iy;
                });
                if (g.stride_w == 1) {
                    row_outputs<V, true>(window, g, e, w, out);
                } else {
                    row_outputs<V, false>(window, g, e, w, out);
                }
                if (shift) {   // on the interleaved sums: a vector of coefficients, no call per plane
                    float factors[L], offsets[L];
                    for (int64_t l = 0; l < L; ++l) {
                        factors[l] = l < count && scale ? scale[c0 + l] : 1.0f;
                        offsets[l] = l < count ? shift[c0 + l] : 0.0f;
                    }
                    affine_activate_interleaved(out, out_plane * L, L, factors, offsets, act);
                }
                // L positions of the L channels, transposed into L runs of the channels' planes
                float* first = y + (image * channels + c0) * out_plane;
                for (int64_t i = 0; i < out_plane; i += L) {
                    V v[L];
#pragma GCC unroll 16
                    for (int64_t p = 0; p < L; ++p) v[p] = load<V>(out + (i + p) * L);
                    transpose(v);
                    const int64_t n = std::min(L, out_plane - i);
                    for (int64_t l = 0; l < count; ++l) store_part(first + l * out_plane + i, v[l], n);
                }
            }
        }
    }

    // The sums of every output position from the interleaved window: runs of OUTPUT_RUN positions along each
    // output row, then the rest of the row as one run (a run of one output would be a chain of dependent
    // multiply-adds). UNIT: stride_w is 1 (the positions of a run are consecutive vectors of the window).
    template <class V, bool UNIT>
    static DARKNET_PY_INLINE void row_outputs(const float* window, const WindowGeometry& g, const ChannelWindow& e,
                                              const float* w, float* out) {
        constexpr int64_t L = lanes<V>();
        for (int64_t oy = 0; oy < g.out_h; ++oy) {
            const float* row = window + oy * g.stride_h * e.cols * L;
            float* sums = out + oy * g.out_w * L;
            int64_t ox = 0;
            for (; ox + OUTPUT_RUN <= g.out_w; ox += OUTPUT_RUN) outputs<V, OUTPUT_RUN, UNIT>(row, g, e, w, sums, ox);
            switch (g.out_w - ox) {
                case 1: outputs<V, 1, UNIT>(row, g, e, w, sums, ox); break;
                case 2: outputs<V, 2, UNIT>(row, g, e, w, sums, ox); break;
                case 3: outputs<V, 3, UNIT>(row, g, e, w, sums, ox); break;
                case 4: outputs<V, 4, UNIT>(row, g, e, w, sums, ox); break;
                case 5: outputs<V, 5, UNIT>(row, g, e, w, sums, ox); break;
                case 6: outputs<V, 6, UNIT>(row, g, e, w, sums, ox); break;
                case 7: outputs<V, 7, UNIT>(row, g, e, w, sums, ox); break;
                default: break;
            }
        }
    }

    // N consecutive outputs of one output row from column ox on, summed over the taps, into sums[ox...]
    template <class V, int64_t N, bool UNIT>
    static DARKNET_PY_INLINE void outputs(const float* row, const WindowGeometry& g, const ChannelWindow& e,
                                          const float* w, float* sums, int64_t ox) {
        constexpr int64_t L = lanes<V>();
        const int64_t step = UNIT ? L : g.stride_w * L, tap_step = g.dilation * L;
        V sum[N] = {};
        const float* weight = w;
        for (int64_t ky = 0; ky < g.kernel; ++ky) {
            const float* src = row + (ky * g.dilation * e.cols + ox * (UNIT ? 1 : g.stride_w)) * L;
            for (int64_t kx = 0; kx < g.kernel; ++kx, src += tap_step, weight += L) {
                const V wv = load<V>(weight);
#pragma GCC unroll 8
                for (int64_t i = 0; i < N; ++i) sum[i] += wv * load<V>(src + i * step);
            }
        }
#pragma GCC unroll 8
        for (int64_t i = 0; i < N; ++i) store(sums + (ox + i) * L, sum[i]);
    }
};

// The channel-interleaved kernel where a plane's grid would be mostly unused columns: narrow outputs (measured on
// efficientnet_b0's and MixNet-M's layers: 1.2-2x faster on 7x7 and stride-1 14x14 outputs, 1.5x slower on
// stride-2 14x14 ones, where the window to interleave is four times the output).
bool interleave_channels(const WindowGeometry& g) { return g.out_w <= 8 || (g.out_w <= 14 && g.stride_w == 1); }

}  // namespace

int64_t depthwise_thread_floats(const WindowGeometry& g) {
    if (interleave_channels(g)) {
        const ChannelWindow e = channel_window(g);
        const int64_t outputs = (g.out_h * g.out_w + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK * CHANNEL_BLOCK;
        return (e.rows * e.cols + g.kernel * g.kernel + outputs) * CHANNEL_BLOCK;
    }
    const Phases p = phases_of(g);
    return p.buffer + p.grid + g.kernel * g.kernel * lanes<Vec16>();   // the weight vectors, at the widest
}

void depthwise_conv2d(const float* x, const float* weights, float* y, int64_t batch, int64_t channels,
                      const WindowGeometry& g, const float* scale, const float* shift, Activation act) {
    const int64_t work = g.out_h * g.out_w * g.kernel * g.kernel, floats = depthwise_thread_floats(g);
    if (interleave_channels(g)) {
        const int64_t blocks = (channels + CHANNEL_BLOCK - 1) / CHANNEL_BLOCK;
        parallel_for(batch * blocks, [&](int64_t begin, int64_t end) {
            const auto buffer = scratch_floats(floats);   // each block zeroes its window and weights
            simd_run<DepthwiseChannels>(x, weights, y, begin, end, channels, &g, buffer.get(), scale, shift, act);
        }, 1 + 8192 / std::max<int64_t>(1, work * CHANNEL_BLOCK));
        return;
    }
    const Phases p = phases_of(g);
    const int64_t phases = g.stride_h * g.stride_w * p.size;
    parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
        // every plane rewrites its phases and its grid; the floats past the phases, which the grid's unused
        // columns read, are zeroed once
        const auto buffer = scratch_floats(floats);
        std::fill(buffer.get() + phases, buffer.get() + p.buffer, 0.0f);
        simd_run<DepthwisePlanes>(x, weights, y, begin, end, channels, &g, &p, buffer.get(), scale, shift, act);
    }, 1 + 8192 / std::max<int64_t>(1, work));
}

}  // namespace darknet_py
