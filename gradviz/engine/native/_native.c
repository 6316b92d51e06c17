/* The recurrent cells' sequential loops, compiled (native/build.py builds this file).
 *
 * PyTorch runs a timestep's small operations one dispatch at a time; at these sizes the
 * dispatch, not the arithmetic, is the cost. The functions here run each layer's loops over
 * time in one call: the forward passes of the three LSTMs, the GRU and the plain RNN (the
 * per-step product, the gates, the states and the gate statistics), the reverse scans of
 * every cell, the norms of the gradient paths over the batch (paths.py) and the
 * per-timestep norms of a capture.
 * What can be batched over time (the weight gradients, the input product of a wide input)
 * stays in PyTorch. The equations are those of the PyTorch code in cells/, which computes
 * the same numbers where this file cannot be built.
 *
 * Layouts are C-contiguous, as in cells/: T timesteps, B batch rows, H units. Gradients of
 * pre-activations dz are (T, B, G·H) in PyTorch's gate order; w_hh is weight_hh (G·H, H).
 * No -ffast-math: NaN and inf must propagate as they do in PyTorch.
 *
 * The file includes itself (by name) once per floating-point type: `real` is the type and
 * S(name) gives each function its type suffix (_f32, _f64).
 */
#ifndef real
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define real float
#define S(name) name##_f32
#include "_native.c"
#undef real
#undef S

#define real double
#define S(name) name##_f64
#define S_IS_DOUBLE
#include "_native.c"
#undef real
#undef S
#undef S_IS_DOUBLE
#undef GEMM_ROWS
#undef GEMM_VECS
#undef GEMM_STRIP

#else

/* True when no gradient crosses from step t+1 back into step t (the end, or a cut every
   `tbptt` steps). */
static inline int S(stops)(int t, int T, int tbptt)
{
    return t == T - 1 || (tbptt > 0 && (t + 1) % tbptt == 0);
}

/* exp(x), written so that a loop calling it vectorizes: exp(x) = 2^n e^r with n the nearest
   integer to x / ln 2 and |r| <= ln 2 / 2, e^r by its Taylor series (8 terms for float, 13
   for double: below one unit in the last place over the whole range, which the self-check
   measures). |x| is clamped to the largest argument with a finite, normal result: the
   sigmoid and tanh built on it saturate exactly as PyTorch's do. NaN stays NaN.
   The clamp works on the bits (for numbers that are not NaN, ordered as |x| is) and NaN
   passes through it and the arithmetic after it: with a floating-point comparison or a
   NaN test, gcc's default -ftrapping-math keeps branches in the calling loops, which then
   do not vectorize (the LSTM forward pass takes 2.6 times as long at H 32). */
/* 1/k!, k = 0 … 12 (constants: a division here would cost more than the rest), and the
   series' length for this type. */
static const real S(inv_fact)[13] = {
    1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
    1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600};
#if defined(S_IS_DOUBLE)
enum { S(TERMS) = 13 };
#else
enum { S(TERMS) = 8 };
#endif

/* What expo and expm1o share: x clamped as above, then x = n ln 2 + r with |r| <= ln 2 / 2.
   Returns r; *scale = 2^n. */
static inline real S(exp_reduce)(real x, real *scale)
{
#if defined(S_IS_DOUBLE)
    const real lim = 708, magic = 6755399441055744.0;           /* 1.5 * 2^52 */
    const real log2e = 1.4426950408889634074, ln2_hi = 6.93145751953125e-1,
               ln2_lo = 1.42860682030941723212e-6;
    typedef int64_t bits_t;
    const bits_t magnitude = INT64_MAX;                      /* all bits but the sign */
    const int mant = 52, bias = 1023;
#else
    const real lim = 88, magic = 12582912.0f;                   /* 1.5 * 2^23 */
    const real log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    typedef int32_t bits_t;
    const bits_t magnitude = INT32_MAX;
    const int mant = 23, bias = 127;
#endif
    const bits_t inf_bits = (bits_t)(2 * bias + 1) << mant;
    bits_t xb, lb;
    memcpy(&xb, &x, sizeof x);
    memcpy(&lb, &lim, sizeof lim);
    bits_t ab = xb & magnitude;
    ab = ab > inf_bits ? ab : (ab < lb ? ab : lb);           /* NaN stays; else min(|x|, lim) */
    bits_t cb = ab | (xb & ~magnitude);
    real xc;
    memcpy(&xc, &cb, sizeof xc);
    real t = xc * log2e + magic;                 /* n, rounded, in t's low mantissa bits */
    real n = t - magic;
    bits_t tb, mb;
    memcpy(&tb, &t, sizeof t);
    memcpy(&mb, &magic, sizeof magic);
    bits_t sb = (bits_t)((tb - mb + bias)) << mant;
    memcpy(scale, &sb, sizeof *scale);
    return (xc - n * ln2_hi) - n * ln2_lo;
}

static inline real S(expo)(real x)
{
    real scale, r = S(exp_reduce)(x, &scale);
    real p = S(inv_fact)[S(TERMS) - 1];
    for (int k = S(TERMS) - 2; k >= 0; k--)      /* Horner */
        p = p * r + S(inv_fact)[k];
    return p * scale;
}

/* exp(x) - 1 as expo computes exp(x), without the cancellation near x = 0: 2^n e^r - 1 =
   2^n (e^r - 1) + (2^n - 1), where e^r - 1 is the series without its first term; for
   |x| <= ln 2 / 2 (n = 0) that is all there is. A few units in the last place. */
static inline real S(expm1o)(real x)
{
    real scale, r = S(exp_reduce)(x, &scale);
    real p = S(inv_fact)[S(TERMS) - 1];
    for (int k = S(TERMS) - 2; k >= 1; k--)
        p = p * r + S(inv_fact)[k];
    real q = p * r;                                           /* e^r - 1 */
    return scale * q + (scale - 1);
}

/* tanh(x) = (e^2x - 1) / (e^2x + 1), to a few units in the last place also near 0, where
   tanhh's 2σ(2x) - 1 has an absolute error of one unit of 1 (the plain RNN's h, unlike the
   LSTM's gates, is compared with PyTorch's down to values near 0). */
static inline real S(tanh_exact)(real x)
{
    real e = S(expm1o)(2 * x);
    return e / (e + 2);
}

static inline real S(sigm)(real x) { return 1 / (1 + S(expo)(-x)); }
static inline real S(tanhh)(real x) { return 2 / (1 + S(expo)(-2 * x)) - 1; }

/* Batch mean and saturated fractions of one timestep's gates a (B', G, H), first `rows`
   rows; gate k's bottom and top bands are a < lo[k] and a > hi[k]. */
static void S(gate_stats)(int rows, int G, int H, const real *a, const real *lo,
                          const real *hi, real *restrict mean, real *restrict low,
                          real *restrict high)
{
    for (int k = 0; k < G * H; k++) mean[k] = 0;
    for (int k = 0; k < G; k++) low[k] = high[k] = 0;
    for (int b = 0; b < rows; b++) {
        const real *restrict ab = a + (size_t)b * G * H;
        for (int k = 0; k < G; k++) {
            int nl = 0, nh = 0;
            for (int h = 0; h < H; h++) {
                nl += ab[k * H + h] < lo[k];
                nh += ab[k * H + h] > hi[k];
            }
            low[k] += nl;
            high[k] += nh;
        }
        for (int k = 0; k < G * H; k++) mean[k] += ab[k];
    }
    for (int k = 0; k < G * H; k++) mean[k] /= rows;
    for (int k = 0; k < G; k++) {
        low[k] /= (real)rows * H;
        high[k] /= (real)rows * H;
    }
}

/* Vectors of 32 bytes (8 floats, 4 doubles); the compiler splits them where it has to.
   Also under AVX-512, where the products use its 32 registers for larger blocks (below)
   and gcc vectorizes the gate loops at 16 lanes by itself (-march=native; at 8 lanes the
   LSTM forward pass takes 1.1-1.17 times as long). Products in 64-byte vectors were
   measured on an AMD EPYC (Zen 4, whose 512-bit units are two 256-bit halves) in blocks
   of 6 × 4, 8 × 3 and 12 × 2 vectors: none faster than these (0.94-1.06 at H 64-128,
   up to 1.37 times as long at H 32, where a row of w_hh is two vectors); on a CPU with
   full-width 512-bit units they were not measured. */
typedef real S(vec) __attribute__((vector_size(32)));
enum { S(VL) = (int)(32 / sizeof(real)) };

static inline S(vec) S(load)(const real *p) { S(vec) v; memcpy(&v, p, sizeof v); return v; }
static inline void S(store)(real *p, S(vec) v) { memcpy(p, &v, sizeof v); }

/* Keeps a loaded vector in a register: without this, compilers fold the load into each of
   the four multiply-adds that use it, and the product waits on loads, not arithmetic. */
static inline void S(in_register)(S(vec) *v)
{
#if defined(__GNUC__) && defined(__AVX__)      /* 32-byte vectors fit one register */
    __asm__("" : "+v"(*v));
#else
    (void)v;
#endif
}

/* Block shapes of gemm_acc, by the number of vector registers: GEMM_ROWS rows by GEMM_VECS
   vectors of accumulators, beside them one row of w's block and one broadcast of a. With 32
   (AVX-512), 6 × 4 (24 + 4 + 1); else 4 × 3 (12 + 3 + 1 = AVX2's 16: a 4 × 4 block spills
   five accumulators to memory on every j and takes 1.5 times as long). The columns that
   GEMM_VECS-vector blocks leave go one vector at a time, GEMM_STRIP rows (8 + 1 + 1). */
#if defined(__AVX512VL__)
#define GEMM_ROWS 6
#define GEMM_VECS 4
#else
#define GEMM_ROWS 4
#define GEMM_VECS 3
#endif
#define GEMM_STRIP 8

/* Rows b..b+R-1, columns n0..n0+V·VL-1 of gemm_acc, the accumulators in R·V vector
   registers while j runs; w is the block's first column, its rows ldw apart. Always
   inlined, so that R and V are constants in each copy. */
static inline __attribute__((always_inline)) void
S(gemm_block)(const int R, const int V, int N, int K, const real *restrict a, int lda,
              const real *restrict w, int ldw, const real *restrict base, real *restrict out)
{
    const int VL = S(VL);
    S(vec) acc[GEMM_STRIP][GEMM_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            acc[r][v] = S(load)(base + (size_t)r * N + v * VL);
    for (int j = 0; j < K; j++) {
        const real *wj = w + (size_t)j * ldw;
        S(vec) wv[GEMM_VECS];
        for (int v = 0; v < V; v++) {
            wv[v] = S(load)(wj + v * VL);
            S(in_register)(&wv[v]);
        }
        for (int r = 0; r < R; r++) {
            real s = a[(size_t)r * lda + j];
            for (int v = 0; v < V; v++) acc[r][v] += s * wv[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            S(store)(out + (size_t)r * N + v * VL, acc[r][v]);
}

/* The right-hand side w (K, N) of gemm_acc's products, row stride N, and the same numbers
   rearranged: each block of columns that gemm_acc takes (GEMM_VECS vectors wide, then one)
   as K rows one after another, the block at n0 from packed + n0·K. Read from w, a block's
   rows are N apart; where that is a power of two of 512 bytes or more (H 128: N = 512
   floats, 2 KiB), they all fall into a few of the L1 cache's sets and evict each other, so
   that every block of rows fetches the block of w again (packed, the LSTM forward pass at
   H 128 misses L1 a quarter as often and takes 0.7 times as long). packed is NULL where no
   memory could be had for it; gemm_acc then reads w. */
typedef struct { int N, K; const real *w; real *packed; } S(rhs);

/* The width of gemm_acc's block of columns at n0: 0 past the last whole vector. */
static inline int S(block_width)(int n0, int N)
{
    const int VL = S(VL);
    return n0 + GEMM_VECS * VL <= N ? GEMM_VECS * VL : (n0 + VL <= N ? VL : 0);
}

/* w (K, N), with its packed copy in memory of its own (free it with rhs_free). */
static S(rhs) S(rhs_of)(int N, int K, const real *w)
{
    S(rhs) m = {N, K, w, malloc((size_t)N * K * sizeof(real))};
    if (m.packed)
        for (int n0 = 0, width; (width = S(block_width)(n0, N)) > 0; n0 += width)
            for (int j = 0; j < K; j++)
                memcpy(m.packed + (size_t)n0 * K + (size_t)j * width, w + (size_t)j * N + n0,
                       width * sizeof(real));
    return m;
}

static void S(rhs_free)(S(rhs) *m) { free(m->packed); }

/* Columns n0..n0+V·VL-1 of gemm_acc, in blocks of R rows, then of 4, 3, 2 and 1. */
static inline __attribute__((always_inline)) void
S(gemm_columns)(const int R, const int V, int n0, int B, const S(rhs) *m,
                const real *restrict a, int lda, const real *restrict base, real *restrict out)
{
    const int N = m->N, K = m->K;
    const real *w = m->packed ? m->packed + (size_t)n0 * K : m->w + n0;
    const int ldw = m->packed ? V * S(VL) : N;
    int b = 0;
#define BLOCK(RB) S(gemm_block)(RB, V, N, K, a + (size_t)b * lda, lda, w, ldw, \
                                base + (size_t)b * N + n0, out + (size_t)b * N + n0)
    for (; b + R <= B; b += R) BLOCK(R);
    for (; b + 4 <= B; b += 4) BLOCK(4);
    for (; b + 3 <= B; b += 3) BLOCK(3);
    for (; b + 2 <= B; b += 2) BLOCK(2);
    for (; b < B; b++) BLOCK(1);
#undef BLOCK
}

/* out[b, n] = base[b, n] + sum_j a[b, j] w[j, n] for b < B, n < N, j < K, w and its sizes
   from m. out and base have row stride N, a has lda. */
static void S(gemm_acc)(int B, const S(rhs) *m, const real *restrict a, int lda,
                        const real *restrict base, real *restrict out)
{
    const int N = m->N, K = m->K, VL = S(VL);
    int n0 = 0;
    for (; n0 + GEMM_VECS * VL <= N; n0 += GEMM_VECS * VL)
        S(gemm_columns)(GEMM_ROWS, GEMM_VECS, n0, B, m, a, lda, base, out);
    for (; n0 + VL <= N; n0 += VL)
        S(gemm_columns)(GEMM_STRIP, 1, n0, B, m, a, lda, base, out);
    /* Columns left over when N is not a multiple of VL, read from w. */
    for (int b = 0; b < B && n0 < N; b++) {
        real *o = out + (size_t)b * N;
        for (int n = n0; n < N; n++) o[n] = base[(size_t)b * N + n];
        for (int j = 0; j < K; j++) {
            real s = a[(size_t)b * lda + j];
            const real *wj = m->w + (size_t)j * N;
            for (int n = n0; n < N; n++) o[n] += s * wj[n];
        }
    }
}

/* dh_t = dout_t + dz_{t+1} W_hh where the gradient flows from t+1, else dout_t. dz_t's
   first G·H values of each row are the pre-activation gradients (w_hh: K = G·H, N = H);
   its rows are ld apart. */
static void S(dh_step)(int t, int T, int B, int H, int ld, int tbptt, const real *dz,
                       const S(rhs) *w_hh, const real *dout, real *dh)
{
    const size_t bh = (size_t)B * H;
    if (S(stops)(t, T, tbptt))
        memcpy(dh + t * bh, dout + t * bh, bh * sizeof(real));
    else
        S(gemm_acc)(B, w_hh, dz + (t + 1) * (size_t)B * ld, ld, dout + t * bh, dh + t * bh);
}

/* One batch row of an LSTM timestep: z (4H) holds the pre-activations of i, f, g, o and
   becomes their activations; then c, tanh(c) and h. With `peep`, the peephole LSTM: w_ci and
   w_cf (wc[:2H]) see c_{t-1}, w_co (wc[2H:]) sees c_t. Always inlined and called with a
   constant `peep`, so that each copy has no branch left and vectorizes. */
static inline __attribute__((always_inline)) void
S(lstm_row_forward)(int H, const int peep, real *restrict z,
                                       const real *restrict wc, const real *restrict cp,
                                       real *restrict c, real *restrict tc, real *restrict h)
{
    for (int k = 0; k < H; k++) {
        real i = S(sigm)(z[k] + (peep ? wc[k] * cp[k] : 0));
        real f = S(sigm)(z[H + k] + (peep ? wc[H + k] * cp[k] : 0));
        real g = S(tanhh)(z[2 * H + k]);
        real cc = f * cp[k] + i * g;
        real o = S(sigm)(z[3 * H + k] + (peep ? wc[2 * H + k] * cc : 0));
        real t = S(tanhh)(cc);
        z[k] = i;
        z[H + k] = f;
        z[2 * H + k] = g;
        z[3 * H + k] = o;
        c[k] = cc;
        tc[k] = t;
        h[k] = o * t;
    }
}

/* One batch row of a coupled LSTM timestep (gates f, g, o; i = 1 - f). */
static inline void S(coupled_row_forward)(int H, real *restrict z, const real *restrict cp,
                                          real *restrict c, real *restrict tc, real *restrict h)
{
    for (int k = 0; k < H; k++) {
        real f = S(sigm)(z[k]), g = S(tanhh)(z[H + k]), o = S(sigm)(z[2 * H + k]);
        real cc = g + f * (cp[k] - g);                /* f c_{t-1} + (1 - f) g */
        real t = S(tanhh)(cc);
        z[k] = f;
        z[H + k] = g;
        z[2 * H + k] = o;
        c[k] = cc;
        tc[k] = t;
        h[k] = o * t;
    }
}

/* The forward pass over T steps of the LSTM (kind 0: G = 4 gate blocks i, f, g, o), the
   peephole LSTM (kind 1: G = 4, w_c = [w_ci, w_cf, w_co], 3H) or the coupled LSTM (kind 2:
   G = 3, f, g, o; w_c unused). xh (T, B, I + H) holds x_t in [:, :, :I]; h_{t-1} is written
   into [:, :, I:] (the weight gradients need [x_t, h_{t-1}]). Two ways to form the
   pre-activations:
     fold = 0: zx (T, B, G·H) is x W_ihᵀ + b_ih + b_hh, done beforehand; w_t (H, G·H) W_hhᵀ;
     fold = 1: zx (B, G·H) is b_ih + b_hh repeated for every row, w_t (I + H, G·H) is
               [W_ih, W_hh]ᵀ, and each step multiplies the whole row [x_t, h_{t-1}] (for a
               narrow input, cheaper than a separate product with an inner size of I).
   Writes the gate activations acts (T, B, G, H), c, tanh(c) and h (T, B, H). With mean not
   NULL, the statistics of the stored gates over the first `rows` rows: mean (T, G, H),
   low / high (T, G) (the coupled cell's i = 1 - f is derived by the caller). */
void S(lstm_cell_forward)(int T, int B, int H, int I, int fold, int kind, const real *zx,
                          const real *w_t, const real *w_c, const real *h0, const real *c0,
                          real *acts, real *c, real *tanh_c, real *h, real *xh, int rows,
                          real *mean, real *low, real *high)
{
    const int G = kind == 2 ? 3 : 4;
    const size_t bh = (size_t)B * H, gh = (size_t)G * H, row_xh = (size_t)(I + H);
    const real lo4[4] = {(real)0.1, (real)0.1, (real)-0.8, (real)0.1};
    const real hi4[4] = {(real)0.9, (real)0.9, (real)0.8, (real)0.9};
    const real *lo = lo4 + (4 - G), *hi = hi4 + (4 - G);      /* the coupled cell: f, g, o */
    S(rhs) w = S(rhs_of)((int)gh, fold ? I + H : H, w_t);
    for (size_t b = 0; b < (size_t)B; b++)
        memcpy(xh + b * row_xh + I, h0 + b * H, H * sizeof(real));
    for (int t = 0; t < T; t++) {
        real *at = acts + t * B * gh;
        const real *row = xh + t * B * row_xh;                /* [x_t, h_{t-1}], rows I+H */
        if (fold)
            S(gemm_acc)(B, &w, row, (int)row_xh, zx, at);
        else
            S(gemm_acc)(B, &w, row + I, (int)row_xh, zx + t * B * gh, at);
        const real *cp = t ? c + (t - 1) * bh : c0;
        for (int b = 0; b < B; b++) {
            const size_t o = t * bh + (size_t)b * H;
            if (kind == 2)
                S(coupled_row_forward)(H, at + b * gh, cp + (size_t)b * H, c + o, tanh_c + o, h + o);
            else if (kind == 1)
                S(lstm_row_forward)(H, 1, at + b * gh, w_c, cp + (size_t)b * H, c + o,
                                    tanh_c + o, h + o);
            else
                S(lstm_row_forward)(H, 0, at + b * gh, w_c, cp + (size_t)b * H, c + o,
                                    tanh_c + o, h + o);
            if (t + 1 < T)                                    /* h_t is step t+1's input */
                memcpy(xh + ((t + 1) * (size_t)B + b) * row_xh + I, h + o, H * sizeof(real));
        }
        if (mean)
            S(gate_stats)(rows, G, H, at, lo, hi, mean + t * gh, low + t * G, high + t * G);
    }
    S(rhs_free)(&w);
}

/* One batch row of the LSTM variants' reverse scan: R = dh ⊙ M + carry_next ⊙ N over the
   G + 1 blocks (see LSTMFamily in gradviz/engine/model/cells/lstm.py); without a carry, R = dh ⊙ M. */
static inline void S(family_row_backward)(int H, int G1, const real *restrict dh,
                                          const real *restrict m, const real *restrict n,
                                          const real *restrict carry_next, real *restrict r)
{
    for (int g = 0; g < G1; g++)
        for (int k = 0; k < H; k++)
            r[g * H + k] = carry_next ? dh[k] * m[g * H + k] + carry_next[k] * n[g * H + k]
                                      : dh[k] * m[g * H + k];
}

/* The reverse scan of the LSTM variants: dh_t = dout_t + dz_{t+1} W_hh with dz_t the first
   G blocks of R_t (T, B, G + 1, H), R_t = dh_t ⊙ M_t + carry_{t+1} ⊙ N_t, carry = R[:, :, G].
   M and N are (T, B, G + 1, H), w_hh (G·H, H). */
void S(lstm_family_scan)(int T, int B, int H, int G, const real *M, const real *N,
                         const real *dout, const real *w_hh, int tbptt, real *dh, real *R)
{
    const size_t g1 = (size_t)(G + 1) * H;
    S(rhs) w = S(rhs_of)(H, G * H, w_hh);
    for (int t = T - 1; t >= 0; t--) {
        const int flows = !S(stops)(t, T, tbptt);
        S(dh_step)(t, T, B, H, (int)g1, tbptt, R, &w, dout, dh);
        for (int b = 0; b < B; b++) {
            const size_t row = t * (size_t)B + b;
            S(family_row_backward)(H, G + 1, dh + row * H, M + row * g1, N + row * g1,
                                   flows ? R + (row + B) * g1 + G * H : NULL, R + row * g1);
        }
    }
    S(rhs_free)(&w);
}

/* A capture's norms, computed by the reverse scans as they go, while each step's rows are
   still in cache (defined with path_norms and step_norms below, whose numbers they are):
   steps (3 or 4, T) as step_norms writes it, paths (Q, T, H) as path_norms does over the
   first `rows` batch rows; NULL where not wanted. */
static void S(path_row)(int t, int T, int B, int H, int rows, int G, int gate_index,
                        int tbptt, const real *dh, const real *dout, const real *dc,
                        const real *gate, real *out, int prefetch);
static void S(step_row)(int t, int T, size_t n, const real *dh, const real *dout,
                        const real *dc, real *out);

/* After step t of a reverse scan: step t's norms, and row t + 1 of the path norms, whose
   inputs (steps t to t + 2) are final now; row 0 after step 0. */
static inline void S(norms_after)(int t, int T, int B, int H, int rows, int G, int gate_index,
                                  int tbptt, const real *dh, const real *dout, const real *dc,
                                  const real *gate, real *steps, real *paths)
{
    if (steps)
        S(step_row)(t, T, (size_t)B * H, dh, dout, dc, steps);
    if (paths && t + 1 < T)
        S(path_row)(t + 1, T, B, H, rows, G, gate_index, tbptt, dh, dout, dc, gate, paths, 0);
    if (paths && t == 0)
        S(path_row)(0, T, B, H, rows, G, gate_index, tbptt, dh, dout, dc, gate, paths, 0);
}

/* One batch row of the LSTM's reverse scan at one timestep (see lstm_cell_backward). A
   function of its own, with restrict pointers, so that the compiler vectorizes it. */
static inline void S(lstm_row_backward)(int H, const real *restrict a, const real *restrict cp,
                                        const real *restrict tc, const real *restrict dh,
                                        real *restrict dc, real *restrict carry,
                                        real *restrict z)
{
    for (int h = 0; h < H; h++) {
        real i = a[h], f = a[H + h], g = a[2 * H + h], o = a[3 * H + h];
        real d = dh[h] * (o * (1 - tc[h] * tc[h])) + carry[h];
        dc[h] = d;
        z[h] = d * (g * (i - i * i));
        z[H + h] = d * (cp[h] * (f - f * f));
        z[2 * H + h] = d * (i - i * (g * g));
        z[3 * H + h] = dh[h] * (tc[h] * (o - o * o));
        carry[h] = d * f;
    }
}

/* LSTM reverse scan over t = T-1 … 0 (see LSTMFamily in gradviz/engine/model/cells/lstm.py):
   dh_t = dout_t + dz_{t+1} W_hh, dc_t = dh_t ⊙ A_t + dc_{t+1} ⊙ f_{t+1}, A = o (1 - tanh² c),
   dz_t = [dc_t ⊙ g σ'_i, dc_t ⊙ c_{t-1} σ'_f, dc_t ⊙ i (1 - g²), dh_t ⊙ tanh(c_t) σ'_o].
   acts holds i, f, g, o (g = tanh); carry (B, H) is scratch for dc_{t+1} ⊙ f_{t+1}.
   steps and paths (or NULL): a capture's norms, see norms_after. */
void S(lstm_cell_backward)(int T, int B, int H, const real *acts, const real *c,
                           const real *c0, const real *tanh_c, const real *dout,
                           const real *w_hh, int tbptt, real *dh, real *dc, real *dz,
                           real *carry, int rows, real *steps, real *paths)
{
    const size_t bh = (size_t)B * H, g4 = 4 * (size_t)H;
    S(rhs) w = S(rhs_of)(H, 4 * H, w_hh);
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, 4 * H, tbptt, dz, &w, dout, dh);
        if (S(stops)(t, T, tbptt))      /* nothing flows from t+1: no carry */
            memset(carry, 0, bh * sizeof(real));
        const real *cprev = t ? c + (t - 1) * bh : c0;
        for (int b = 0; b < B; b++) {
            const size_t row = t * (size_t)B + b;
            S(lstm_row_backward)(H, acts + row * g4, cprev + (size_t)b * H, tanh_c + row * H,
                                 dh + row * H, dc + row * H, carry + (size_t)b * H,
                                 dz + row * g4);
        }
        S(norms_after)(t, T, B, H, rows, 4, 1, tbptt, dh, dout, dc, acts, steps, paths);
    }
    S(rhs_free)(&w);
}

/* One batch row of a GRU timestep: u (3H) = W_hh h_{t-1} + b_hh, zx (3H) = W_ih x_t + b_ih.
   Writes the gates a = r, z, n (3H), u_n and h_t. */
static inline void S(gru_row_forward)(int H, const real *restrict zx, const real *restrict u,
                                      const real *restrict hp, real *restrict a,
                                      real *restrict un, real *restrict h)
{
    for (int k = 0; k < H; k++) {
        real r = S(sigm)(zx[k] + u[k]), z = S(sigm)(zx[H + k] + u[H + k]);
        real n = S(tanhh)(zx[2 * H + k] + r * u[2 * H + k]);
        a[k] = r;
        a[H + k] = z;
        a[2 * H + k] = n;
        un[k] = u[2 * H + k];
        h[k] = n + z * (hp[k] - n);
    }
}

/* The GRU forward pass (see GRUCell in gradviz/engine/model/cells/gru.py). zx (T, B, 3H) is x W_ihᵀ + b_ih, w_t (H, 3H)
   W_hhᵀ, b_rows (B, 3H) b_hh repeated for every row; u (B, 3H) is scratch. Writes the gates
   (T, B, 3, H; r, z, n), u_n = W_hn h_{t-1} + b_hn and h (T, B, H); with mean not NULL, the
   gate statistics of the first `rows` rows as in lstm_cell_forward. */
void S(gru_cell_forward)(int T, int B, int H, const real *zx, const real *w_t,
                         const real *b_rows, const real *h0, real *gates, real *un, real *h,
                         real *u, int rows, real *mean, real *low, real *high)
{
    const size_t bh = (size_t)B * H, g3 = 3 * (size_t)H;
    const real lo[3] = {(real)0.1, (real)0.1, (real)-0.8};
    const real hi[3] = {(real)0.9, (real)0.9, (real)0.8};
    S(rhs) w = S(rhs_of)(3 * H, H, w_t);
    for (int t = 0; t < T; t++) {
        const real *hp = t ? h + (t - 1) * bh : h0;
        S(gemm_acc)(B, &w, hp, H, b_rows, u);
        real *at = gates + t * B * g3;
        for (int b = 0; b < B; b++)
            S(gru_row_forward)(H, zx + (t * (size_t)B + b) * g3, u + b * g3, hp + (size_t)b * H,
                               at + b * g3, un + t * bh + (size_t)b * H, h + t * bh + (size_t)b * H);
        if (mean)
            S(gate_stats)(rows, 3, H, at, lo, hi, mean + t * g3, low + t * 3, high + t * 3);
    }
    S(rhs_free)(&w);
}

/* One batch row of the GRU's reverse scan: from dh_t, the gradients of the recurrent
   pre-activations dzh = dh ⊙ [Cr, Cz, Cn ⊙ r] and of the input ones dzx = dh ⊙ [Cr, Cz, Cn],
   Cn = (1-z)(1-n²), Cz = (h_{t-1}-n) z(1-z), Cr = Cn u_n r(1-r). */
static inline void S(gru_row_backward)(int H, const real *restrict a, const real *restrict un,
                                       const real *restrict hp, const real *restrict dh,
                                       real *restrict dzh, real *restrict dzx)
{
    for (int k = 0; k < H; k++) {
        real r = a[k], z = a[H + k], n = a[2 * H + k], d = dh[k];
        real cn = (1 - z) * (1 - n * n);
        real cz = (hp[k] - n) * (z - z * z);
        real cr = cn * un[k] * (r - r * r);
        dzh[k] = dzx[k] = d * cr;
        dzh[H + k] = dzx[H + k] = d * cz;
        dzx[2 * H + k] = d * cn;
        dzh[2 * H + k] = d * (cn * r);
    }
}

/* GRU reverse scan: dh_t = dout_t + dzh_{t+1} W_hh + dh_{t+1} ⊙ z_{t+1}. gates and un as
   gru_cell_forward wrote them, h_prev (T, B, H) the h_{t-1}; dzh and dzx are (T, B, 3H).
   steps and paths (or NULL): a capture's norms, see norms_after. */
void S(gru_cell_backward)(int T, int B, int H, const real *gates, const real *un,
                          const real *h_prev, const real *dout, const real *w_hh, int tbptt,
                          real *dh, real *dzh, real *dzx, int rows, real *steps, real *paths)
{
    const size_t bh = (size_t)B * H, g3 = 3 * (size_t)H;
    S(rhs) w = S(rhs_of)(H, 3 * H, w_hh);
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, 3 * H, tbptt, dzh, &w, dout, dh);
        const int flows = !S(stops)(t, T, tbptt);
        for (int b = 0; b < B; b++) {
            const size_t row = t * (size_t)B + b;
            real *restrict d = dh + row * H;
            if (flows) {
                const real *restrict dn = dh + row * H + bh;
                const real *restrict zn = gates + (row + B) * g3 + H;   /* z_{t+1} */
                for (int k = 0; k < H; k++) d[k] += dn[k] * zn[k];
            }
            S(gru_row_backward)(H, gates + row * g3, un + row * H, h_prev + row * H, d,
                                dzh + row * g3, dzx + row * g3);
        }
        S(norms_after)(t, T, B, H, rows, 3, 1, tbptt, dh, dout, NULL, gates, steps, paths);
    }
    S(rhs_free)(&w);
}

/* The plain RNN's forward pass: h_t = φ(zx_t + h_{t-1} W_hhᵀ), and φ'_t for its reverse
   scan (tanh: 1 - h_t²; relu: 1 where h_t > 0, else 0; NaN stays NaN in h as in PyTorch).
   zx (T, B, H) is x W_ihᵀ + b_ih + b_hh, done beforehand; w_t (H, H) is W_hhᵀ; h0 (B, H).
   Writes h and dphi (T, B, H). PyTorch's fused tanh RNN takes 2.4-4.8 times as long at
   B 33, H 32-128 (a product and a tanh dispatched per step). */
void S(rnn_cell_forward)(int T, int B, int H, int relu, const real *zx, const real *w_t,
                         const real *h0, real *h, real *dphi)
{
    const size_t bh = (size_t)B * H;
    S(rhs) w = S(rhs_of)(H, H, w_t);
    for (int t = 0; t < T; t++) {
        const real *hp = t ? h + (t - 1) * bh : h0;
        real *restrict ht = h + t * bh, *restrict d = dphi + t * bh;
        S(gemm_acc)(B, &w, hp, H, zx + t * bh, ht);
        if (relu)
            for (size_t k = 0; k < bh; k++) {
                real z = ht[k];
                real v = z < 0 ? 0 : z;                       /* NaN < 0 is false: NaN */
                ht[k] = v;
                d[k] = v > 0 ? 1 : 0;
            }
        else
            for (size_t k = 0; k < bh; k++) {
                real v = S(tanh_exact)(ht[k]);
                ht[k] = v;
                d[k] = 1 - v * v;
            }
    }
    S(rhs_free)(&w);
}

/* Plain RNN reverse scan: dh_t = dout_t + dz_{t+1} W_hh, dz_t = dh_t ⊙ φ'_t. steps and
   paths (or NULL): a capture's norms, see norms_after. */
void S(rnn_cell_backward)(int T, int B, int H, const real *dphi, const real *dout,
                          const real *w_hh, int tbptt, real *dh, real *dz, int rows,
                          real *steps, real *paths)
{
    const size_t bh = (size_t)B * H;
    S(rhs) w = S(rhs_of)(H, H, w_hh);
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, H, tbptt, dz, &w, dout, dh);
        const real *restrict d = dh + t * bh, *restrict p = dphi + t * bh;
        real *restrict o = dz + t * bh;
        for (size_t k = 0; k < bh; k++) o[k] = d[k] * p[k];
        S(norms_after)(t, T, B, H, rows, 0, 0, tbptt, dh, dout, NULL, NULL, steps, paths);
    }
    S(rhs_free)(&w);
}

/* The path norms sum their squares over the batch rows in double, for at most PATH_CHUNK
   units at a time: 5 × 256 doubles, 10 KiB, in L1 beside the rows being read, whatever H. */
enum { S(PATH_CHUNK) = 256 };

/* acc[h] += v², v = a[h] - m[h] - p[h] q[h], each term there where its flag says (the flags
   are constants in each inlined copy, which then has no branch left); v in the inputs' type,
   as PyTorch computes it, its square summed in double. */
static inline __attribute__((always_inline)) void
S(add_squares)(int n, const int A, const int M, const int P, const real *restrict a,
               const real *restrict m, const real *restrict p, const real *restrict q,
               double *restrict acc)
{
    for (int h = 0; h < n; h++) {
        real v = A ? (M ? a[h] - m[h] : a[h]) : 0;
        if (P)
            v = A ? v - p[h] * q[h] : p[h] * q[h];
        acc[h] += (double)v * v;
    }
}

static inline void S(prefetch)(const real *p, int n)
{
    for (int k = 0; k < n; k += 64 / (int)sizeof(real)) __builtin_prefetch(p + k);
}

/* Row t of path_norms (below) for all units; with `prefetch`, the rows that row t + 1 reads
   first are fetched while this one is summed. The reverse scans call it for row t + 1 as
   soon as step t is done, while those rows are still in cache. */
static void S(path_row)(int t, int T, int B, int H, int rows, int G, int gate_index,
                        int tbptt, const real *dh, const real *dout, const real *dc,
                        const real *gate, real *out, int prefetch)
{
    const int CH = S(PATH_CHUNK), lstm = dc != NULL, Q = lstm ? 5 : (gate ? 3 : 2);
    const int qdh = 0, qdc = 1, qbelt = lstm ? 2 : 1, qw = lstm ? 3 : Q - 1, qch = 4;
    /* How far ahead in t a row of dc and of the gate is first read: the LSTMs' c_h at t
       reads dc_{t+1} and f_{t+1}. */
    const int ahead = lstm ? 2 : 1;
    const size_t bh = (size_t)B * H, gb = (size_t)G * H, gt = (size_t)B * gb;
    double acc[5][S(PATH_CHUNK)];
    const int belt = gate && (t == 0 || !S(stops)(t - 1, T, tbptt));
    const int next = !S(stops)(t, T, tbptt);
    for (int h0 = 0; h0 < H; h0 += CH) {
        const int n = H - h0 < CH ? H - h0 : CH;
        for (int q = 0; q < Q; q++)
            for (int h = 0; h < n; h++) acc[q][h] = 0;
        for (int b = 0; b < rows; b++) {
            const size_t o = t * bh + (size_t)b * H + h0, op = o - bh;
            const real *g = gate ? gate + t * gt + (size_t)b * gb + (size_t)gate_index * H + h0
                                 : NULL;
            /* The rows that step t + 1 reads first, fetched now. After a backward pass
               the inputs are in memory, not in cache, and the hardware's prefetchers
               do not keep four new rows at a time in flight (the gates' rows G·H
               apart): with this, the loop takes 0.75-0.9 times as long. */
            if (prefetch && t + 1 < T) {
                S(prefetch)(dh + o + bh, n);
                S(prefetch)(dout + o, n);
            }
            if (prefetch && t + ahead < T) {
                if (lstm)
                    S(prefetch)(dc + o + ahead * bh, n);
                if (gate)
                    S(prefetch)(g + ahead * gt, n);
            }
            S(add_squares)(n, 1, 0, 0, dh + o, NULL, NULL, NULL, acc[qdh]);
            if (belt)
                S(add_squares)(n, 0, 0, 1, NULL, NULL, g, lstm ? dc + o : dh + o, acc[qbelt]);
            if (lstm) {
                S(add_squares)(n, 1, 0, 0, dc + o, NULL, NULL, NULL, acc[qdc]);
                if (next)                                 /* dc_t - f_{t+1} dc_{t+1} */
                    S(add_squares)(n, 1, 0, 1, dc + o, NULL, g + gt, dc + o + bh, acc[qch]);
                else
                    S(add_squares)(n, 1, 0, 0, dc + o, NULL, NULL, NULL, acc[qch]);
            }
            if (t > 0 && !lstm && belt)                   /* the GRU's w: minus its belt */
                S(add_squares)(n, 1, 1, 1, dh + op, dout + op, g, dh + o, acc[qw]);
            else if (t > 0)
                S(add_squares)(n, 1, 1, 0, dh + op, dout + op, NULL, NULL, acc[qw]);
        }
        for (int q = 0; q < Q; q++) {
            real *restrict r = out + ((size_t)q * T + t) * H + h0;
            for (int h = 0; h < n; h++)
                r[h] = q == qw && t == 0 ? NAN : (real)sqrt(acc[q][h]);
        }
    }
}

/* The norm over the first `rows` of the B batch rows of each path's gradient, per timestep
   and unit (gradviz/engine/analysis/paths.py, whose PyTorch code computes the same where this file
   cannot be built): out (Q, T, H), in one pass over the inputs, the squares summed in
   double. dh, dout and dc are (T, B, H); gate points at the gate activations (T, B, G, H),
   the belt's gate (the LSTMs' f, the GRU's z) at block `gate_index`. The paths, by what is
   not NULL:
     dc and gate (the LSTMs, Q 5): dh, dc, belt = f_t dc_t, w, c_h;
     gate only (the GRU, Q 3):     dh, belt = z_t dh_t, w;
     neither (plain RNN, Q 2):     dh, w.
   belt_t is 0 where no gradient crosses from t back to t-1 (stops(t-1)); w_0 is NaN (h_{-1}
   is not captured), w_t = dh_{t-1} - dout_{t-1} (the GRU: - belt_t); c_h_t = dc_t - belt_{t+1},
   dc_t where stops(t). */
void S(path_norms)(int T, int B, int H, int rows, int G, int gate_index, int tbptt,
                   const real *dh, const real *dout, const real *dc, const real *gate,
                   real *out)
{
    for (int t = 0; t < T; t++)
        S(path_row)(t, T, B, H, rows, G, gate_index, tbptt, dh, dout, dc, gate, out, 1);
}

/* The 2-norm of each of the T rows of x (T, B·H) into out (T): the per-timestep norms of
   a capture (‖∂L/∂h_t‖ over batch × units). Squares summed in double, in sixteen partial sums
   in a fixed order (the same on every vector width): a float's square neither underflows
   nor overflows there, so a norm is 0 only when its row is. In double, a row whose sum of
   squares is outside (1e-290, 1e290), where squares could have underflowed or overflowed,
   is summed again scaled by its largest magnitude. */
typedef double S(v4d) __attribute__((vector_size(32)));
typedef real S(v4r) __attribute__((vector_size(4 * sizeof(real))));

/* The 2-norm of the n values v_k = x[k] - y[k] (with D; else x[k]), v formed in `real` as
   PyTorch forms x - y: row_norms's sum, for one row. */
static inline __attribute__((always_inline)) real
S(norm2)(size_t n, const real *restrict x, const real *restrict y, const int D)
{
    /* Sixteen partial sums, four vectors of four: a single chain of dependent additions
       runs at one every few cycles. */
    S(v4d) s0 = {0, 0, 0, 0}, s1 = s0, s2 = s0, s3 = s0;
    size_t k = 0;
    for (; k + 16 <= n; k += 16) {
        S(v4r) a, b, c, d;
        memcpy(&a, x + k, sizeof a);
        memcpy(&b, x + k + 4, sizeof b);
        memcpy(&c, x + k + 8, sizeof c);
        memcpy(&d, x + k + 12, sizeof d);
        if (D) {
            S(v4r) ya, yb, yc, yd;
            memcpy(&ya, y + k, sizeof ya);
            memcpy(&yb, y + k + 4, sizeof yb);
            memcpy(&yc, y + k + 8, sizeof yc);
            memcpy(&yd, y + k + 12, sizeof yd);
            a -= ya;
            b -= yb;
            c -= yc;
            d -= yd;
        }
        const S(v4d) da = __builtin_convertvector(a, S(v4d)),
                     db = __builtin_convertvector(b, S(v4d)),
                     dc = __builtin_convertvector(c, S(v4d)),
                     dd = __builtin_convertvector(d, S(v4d));
        s0 += da * da;
        s1 += db * db;
        s2 += dc * dc;
        s3 += dd * dd;
    }
    s0 += s1;
    s2 += s3;
    s0 += s2;
    double sum = (s0[0] + s0[1]) + (s0[2] + s0[3]);
    for (; k < n; k++) {
        real v = D ? x[k] - y[k] : x[k];
        sum += (double)v * v;
    }
#ifdef S_IS_DOUBLE
    if (sum < 1e-290 || sum > 1e290) {
        double peak = 0;
        for (k = 0; k < n; k++) {
            double v = fabs(D ? x[k] - y[k] : x[k]);
            peak = v > peak ? v : peak;
        }
        if (peak > 0 && isfinite(peak)) {
            sum = 0;
            for (k = 0; k < n; k++) {
                double v = (D ? x[k] - y[k] : x[k]) / peak;
                sum += v * v;
            }
            return peak * sqrt(sum);
        }
    }
#endif
    return (real)sqrt(sum);
}

void S(row_norms)(int T, int B, int H, const real *x, real *out)
{
    const size_t n = (size_t)B * H;
    for (int t = 0; t < T; t++)
        out[t] = S(norm2)(n, x + t * n, NULL, 0);
}

/* A capture's per-timestep norms in one call: out (Q, T) holds ‖dh_t‖, ‖dout_t‖,
   ‖dh_t - dout_t‖ (the part carried through the recurrence) and, where dc is not NULL,
   ‖dc_t‖, each over the B·H values of step t; the numbers row_norms gives for each (and
   for dh - dout formed beforehand), without forming dh - dout or calling once per norm. */
static void S(step_row)(int t, int T, size_t n, const real *dh, const real *dout,
                        const real *dc, real *out)
{
    const real *d = dh + t * n, *o = dout + t * n;
    out[t] = S(norm2)(n, d, NULL, 0);
    out[T + t] = S(norm2)(n, o, NULL, 0);
    out[2 * T + t] = S(norm2)(n, d, o, 1);
    if (dc)
        out[3 * T + t] = S(norm2)(n, dc + t * n, NULL, 0);
}

void S(step_norms)(int T, int B, int H, const real *dh, const real *dout, const real *dc,
                   real *out)
{
    for (int t = 0; t < T; t++)
        S(step_row)(t, T, (size_t)B * H, dh, dout, dc, out);
}

#ifdef S_IS_DOUBLE
/* The spectrum's Lanczos (gradviz/engine/analysis/spectrum.py says what it computes and why), one
   call for all blocks: dispatching its small products from numpy cost ~0.2 ms an
   iteration, their arithmetic ~5 us. Double only: the spectrum is always float64. */

/* x · y, in eight partial sums: a single running sum is a chain of dependent additions
   that the compiler may not reorder (no -ffast-math), ~4x slower. The order is fixed by
   the code, not by the vector width, so every machine sums alike. */
static double dot_f64(int n, const double *x, const double *y)
{
    typedef double v4 __attribute__((vector_size(32)));
    v4 s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        v4 a0, b0, a1, b1;
        memcpy(&a0, x + c, sizeof a0);
        memcpy(&b0, y + c, sizeof b0);
        memcpy(&a1, x + c + 4, sizeof a1);
        memcpy(&b1, y + c + 4, sizeof b1);
        s0 += a0 * b0;
        s1 += a1 * b1;
    }
    s0 += s1;
    double s = (s0[0] + s0[1]) + (s0[2] + s0[3]);
    for (; c < n; c++) s = fma(x[c], y[c], s);
    return s;
}

/* How many eigenvalues of the symmetric tridiagonal (a, b) of order k are below x
   (Sturm: the signs of the pivots of T - xI). */
/* dot_f64 with x in float, each element made double as it is read: the same operations in
   the same order on the same (exactly converted) numbers, so the same result (the scalar
   tails and top_singular's row updates are explicit fma()s, which gcc would otherwise
   contract or not depending on how each loop was vectorized). */
static double dot_f32_f64(int n, const float *x, const double *y)
{
    typedef double v4 __attribute__((vector_size(32)));
    typedef float v4f __attribute__((vector_size(16)));
    v4 s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        v4f f0, f1;
        v4 b0, b1;
        memcpy(&f0, x + c, sizeof f0);
        memcpy(&b0, y + c, sizeof b0);
        memcpy(&f1, x + c + 4, sizeof f1);
        memcpy(&b1, y + c + 4, sizeof b1);
        s0 += __builtin_convertvector(f0, v4) * b0;
        s1 += __builtin_convertvector(f1, v4) * b1;
    }
    s0 += s1;
    double s = (s0[0] + s0[1]) + (s0[2] + s0[3]);
    for (; c < n; c++) s = fma((double)x[c], y[c], s);
    return s;
}

static int sturm_below(int k, const double *a, const double *b, double x)
{
    int count = 0;
    double d = 1;
    for (int i = 0; i < k; i++) {
        double off = i ? b[i - 1] * b[i - 1] : 0;
        d = a[i] - x - (i ? off / d : 0);
        if (d == 0) d = -1e-300;
        count += d < 0;
    }
    return count;
}

/* The eigenvalue of index `which` (0 the smallest) of the tridiagonal (a, b) of order k,
   by bisection of [lo, hi] (or of the Gershgorin interval, where lo > hi) until the
   interval is within rtol of its ends. */
static double tridiagonal_eigenvalue(int k, const double *a, const double *b, int which,
                                     double lo, double hi, double rtol)
{
    double glo = a[0], ghi = a[0];
    for (int i = 0; i < k; i++) {        /* Gershgorin */
        double r = (i ? fabs(b[i - 1]) : 0) + (i < k - 1 ? fabs(b[i]) : 0);
        if (a[i] - r < glo) glo = a[i] - r;
        if (a[i] + r > ghi) ghi = a[i] + r;
    }
    lo = lo > glo && lo <= ghi ? lo : glo;
    hi = hi < ghi && hi >= lo ? hi : ghi;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi || hi - lo <= rtol * fmax(fabs(lo), fabs(hi))) break;
        if (sturm_below(k, a, b, mid) > which) hi = mid; else lo = mid;
    }
    return 0.5 * (lo + hi);
}

/* A unit eigenvector y (k) of the tridiagonal (a, b) for its eigenvalue theta: two steps
   of inverse iteration, each a solve of (T - theta I) by Gaussian elimination with
   partial pivoting (k is at most a few dozen); a zero pivot is replaced by a tiny one,
   which is what makes inverse iteration converge in a step or two. */
static void tridiagonal_eigenvector(int k, const double *a, const double *b, double theta,
                                    double *y, double *m)
{
    double scale = fabs(theta) + 1e-300;
    for (int i = 0; i < k; i++) y[i] = 1;
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++)
                m[r * k + c] = r == c ? a[r] - theta : (c == r + 1 ? b[r] : (r == c + 1 ? b[c] : 0));
        for (int c = 0; c < k; c++) {
            int p = c;
            for (int r = c + 1; r < k; r++)
                if (fabs(m[r * k + c]) > fabs(m[p * k + c])) p = r;
            if (p != c) {
                for (int j = 0; j < k; j++) {
                    double t = m[c * k + j]; m[c * k + j] = m[p * k + j]; m[p * k + j] = t;
                }
                double t = y[c]; y[c] = y[p]; y[p] = t;
            }
            if (fabs(m[c * k + c]) < 1e-15 * scale) m[c * k + c] = 1e-15 * scale;
            for (int r = c + 1; r < k; r++) {
                double f = m[r * k + c] / m[c * k + c];
                if (f == 0) continue;
                for (int j = c; j < k; j++) m[r * k + j] -= f * m[c * k + j];
                y[r] -= f * y[c];
            }
        }
        for (int r = k - 1; r >= 0; r--) {
            double s = y[r];
            for (int j = r + 1; j < k; j++) s -= m[r * k + j] * y[j];
            y[r] = s / m[r * k + r];
        }
        double norm = 0;
        for (int i = 0; i < k; i++) norm += y[i] * y[i];
        norm = sqrt(norm);
        for (int i = 0; i < k; i++) y[i] /= norm;
    }
}

/* Largest singular value of each of the n blocks w (n, h, h) by Lanczos on WᵀW from the
   vectors v (n, h), at most m Lanczos vectors, every one reorthogonalised twice against
   all before it. Out: sigma (n), v the unit Ritz vectors, ok (n) 1 where the Ritz value
   passed the residual or Temple test at relative accuracy tol, else 0 (and sigma is the
   estimate so far). Returns 0, or -1 if it could not allocate its workspace.
   top_singular_f32 takes float blocks, each element made double as it is read (exactly):
   the same numbers as top_singular_f64 on the blocks made double, without that copy
   (0.5 MiB for four 128 × 128 blocks, read several times a step). The body is written
   once, for the weights in double (wd) or in float (wf): one of them is NULL, and each
   inlined copy has a constant one. */
static inline __attribute__((always_inline)) int
top_singular_any(int n, int h, int m, const double *wd, const float *wf, double *v,
                 double tol, double *sigma, int *ok)
{
    if (m > h) m = h;
    double *q = malloc(sizeof(double) * ((size_t)(m + 1) * h + (size_t)h + 3 * m + m * m));
    if (!q) return -1;
    double *z = q + (size_t)(m + 1) * h, *a = z + h, *b = a + m, *y = b + m, *work = y + m;
    const int test_every = h >= 64 ? 1 : 4;
    for (int blk = 0; blk < n; blk++) {
        const double *Wd = wd ? wd + (size_t)blk * h * h : NULL;
        const float *Wf = wf ? wf + (size_t)blk * h * h : NULL;
        double *vb = v + (size_t)blk * h;
        double norm = sqrt(dot_f64(h, vb, vb));
        ok[blk] = 0;
        sigma[blk] = NAN;
        if (!(norm > 0) || !isfinite(norm)) continue;
        for (int c = 0; c < h; c++) q[c] = vb[c] / norm;
        double tiny = 0, theta = 0;
        int k = 0;
        for (int j = 0; j < m; j++) {
            const double *qj = q + (size_t)j * h;
            /* z = Wᵀ (W q_j), one pass over W: (W q_j)_r = row r · q_j, then z += it · row r
               while the row is still in the first-level cache. */
            for (int c = 0; c < h; c++) z[c] = 0;
            for (int r = 0; r < h; r++) {
                if (wd) {
                    const double *row = Wd + (size_t)r * h;
                    double ur = dot_f64(h, row, qj);
                    for (int c = 0; c < h; c++) z[c] = fma(ur, row[c], z[c]);
                } else {
                    const float *row = Wf + (size_t)r * h;
                    double ur = dot_f32_f64(h, row, qj);
                    for (int c = 0; c < h; c++) z[c] = fma(ur, (double)row[c], z[c]);
                }
            }
            double alpha = dot_f64(h, qj, z);
            a[j] = alpha;
            if (j == 0) tiny = 1e-14 * fabs(alpha);
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i <= j; i++) {
                    const double *qi = q + (size_t)i * h;
                    double dot = dot_f64(h, qi, z);
                    for (int c = 0; c < h; c++) z[c] -= dot * qi[c];
                }
            double beta = sqrt(dot_f64(h, z, z));
            int broke = !(beta > tiny);
            if (broke) beta = 0;
            k = j + 1;
            /* The test costs more than an iteration at small H: there it is made on the
               first vector (a start that is already converged), then on every fourth and
               on the last; from H 64 on, where an iteration costs more, on every one. The
               largest Ritz value only grows with k (interlacing), so the last one bounds
               the new one from below; bisection finds it to 1e-10, inverse iteration its
               vector y, and the Rayleigh quotient yᵀTy then has it to rounding (its error
               is quadratic in y's). */
            if (k == 1 || k % test_every == 0 || broke || k == m) {
                double bound = tridiagonal_eigenvalue(k, a, b, k - 1, theta, -1, 1e-10);
                tridiagonal_eigenvector(k, a, b, bound, y, work);
                theta = 0;
                for (int i = 0; i < k; i++)
                    theta += y[i] * (a[i] * y[i] + (i ? b[i - 1] * y[i - 1] : 0)
                                     + (i < k - 1 ? b[i] * y[i + 1] : 0));
                double residual = beta * fabs(y[k - 1]);
                int done = broke || residual <= tol * fabs(theta);
                if (!done && k > 2) {  /* Temple's r²/gap, the gap to the next Ritz value */
                    double gap = theta - tridiagonal_eigenvalue(k, a, b, k - 2, -1, theta, 1e-6);
                    done = residual <= 0.1 * gap && residual * residual <= tol * fabs(theta) * gap;
                }
                ok[blk] = done;
                if (done || k == m) break;
            }
            b[j] = beta;
            double *next = q + (size_t)(j + 1) * h;
            for (int c = 0; c < h; c++) next[c] = z[c] / beta;
        }
        for (int c = 0; c < h; c++) vb[c] = 0;         /* the Ritz vector x = Q y */
        for (int i = 0; i < k; i++)
            for (int c = 0; c < h; c++) vb[c] += y[i] * q[(size_t)i * h + c];
        norm = sqrt(dot_f64(h, vb, vb));
        for (int c = 0; c < h; c++) vb[c] /= norm > 0 ? norm : 1;
        sigma[blk] = sqrt(theta > 0 ? theta : 0);
    }
    free(q);
    return 0;
}

int top_singular_f64(int n, int h, int m, const double *w, double *v, double tol,
                     double *sigma, int *ok)
{
    return top_singular_any(n, h, m, w, NULL, v, tol, sigma, ok);
}

int top_singular_f32(int n, int h, int m, const float *w, double *v, double tol,
                     double *sigma, int *ok)
{
    return top_singular_any(n, h, m, NULL, w, v, tol, sigma, ok);
}
#endif

#endif
