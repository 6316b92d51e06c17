/* The LSTM's sequential loops, compiled (see native.py, which builds and loads this file).
 *
 * PyTorch runs the LSTM's one-timestep operations one dispatch at a time; at small sizes the
 * dispatch, not the arithmetic, is the cost. These two functions run the loops that cannot
 * be batched over time — the cell-state recurrence of the forward recompute and the reverse
 * scan of the backward pass — in one call each. Everything that can be batched over time
 * (the gate products, the transcendental functions, the weight gradients) stays in PyTorch.
 *
 * Layouts are C-contiguous and match cells.py: acts (T, B, 4, H) with gates i, f, g, o;
 * c, dh, dc, dout (T, B, H); dz (T, B, 4H); w_hh (4H, H), PyTorch's weight_hh.
 * No -ffast-math: NaN and inf must propagate exactly as they do in PyTorch.
 */
#include <stddef.h>
#include <string.h>

#define DEFINE_LSTM_KERNELS(real, S)                                                          \
                                                                                              \
typedef real vec_##S __attribute__((vector_size(32)));                                       \
enum { VL_##S = (int)(32 / sizeof(real)), NV_##S = 4, KN_##S = 4 * (int)(32 / sizeof(real)) }; \
                                                                                              \
static inline vec_##S load_##S(const real *p) { vec_##S v; memcpy(&v, p, sizeof v); return v; } \
static inline void store_##S(real *p, vec_##S v) { memcpy(p, &v, sizeof v); }               \
                                                                                              \
/* out[b, n] = base[b, n] + sum_j a[b, j] w[j, n]: b < B, n < N, j < K; out and base have    \
   row stride N, a has lda, w has N. Four batch rows by KN columns live in 16 registers. */   \
static void gemm_acc_##S(int B, int N, int K, const real *a, int lda, const real *w,        \
                         const real *base, real *out)                                        \
{                                                                                             \
    int n0 = 0;                                                                               \
    for (; n0 + KN_##S <= N; n0 += KN_##S) {                                                 \
        int b = 0;                                                                            \
        for (; b + 4 <= B; b += 4) {                                                          \
            vec_##S acc[4][NV_##S];                                                           \
            for (int r = 0; r < 4; r++)                                                       \
                for (int v = 0; v < NV_##S; v++)                                              \
                    acc[r][v] = load_##S(base + (size_t)(b + r) * N + n0 + v * VL_##S);       \
            const real *a0 = a + (size_t)b * lda;                                             \
            for (int j = 0; j < K; j++) {                                                     \
                const real *wj = w + (size_t)j * N + n0;                                      \
                vec_##S wv[NV_##S];                                                           \
                for (int v = 0; v < NV_##S; v++) wv[v] = load_##S(wj + v * VL_##S);           \
                for (int r = 0; r < 4; r++) {                                                 \
                    real s = a0[(size_t)r * lda + j];                                         \
                    for (int v = 0; v < NV_##S; v++) acc[r][v] += s * wv[v];                 \
                }                                                                             \
            }                                                                                 \
            for (int r = 0; r < 4; r++)                                                       \
                for (int v = 0; v < NV_##S; v++)                                              \
                    store_##S(out + (size_t)(b + r) * N + n0 + v * VL_##S, acc[r][v]);        \
        }                                                                                     \
        for (; b < B; b++) {                                                                  \
            vec_##S acc[NV_##S];                                                              \
            for (int v = 0; v < NV_##S; v++)                                                  \
                acc[v] = load_##S(base + (size_t)b * N + n0 + v * VL_##S);                    \
            for (int j = 0; j < K; j++) {                                                     \
                real s = a[(size_t)b * lda + j];                                              \
                for (int v = 0; v < NV_##S; v++)                                              \
                    acc[v] += s * load_##S(w + (size_t)j * N + n0 + v * VL_##S);              \
            }                                                                                 \
            for (int v = 0; v < NV_##S; v++)                                                  \
                store_##S(out + (size_t)b * N + n0 + v * VL_##S, acc[v]);                     \
        }                                                                                     \
    }                                                                                         \
    /* Columns left over when N is not a multiple of KN: plain loops. */                     \
    for (int b = 0; b < B && n0 < N; b++) {                                                   \
        real *o = out + (size_t)b * N;                                                        \
        for (int n = n0; n < N; n++) o[n] = base[(size_t)b * N + n];                          \
        for (int j = 0; j < K; j++) {                                                         \
            real s = a[(size_t)b * lda + j];                                                  \
            const real *wj = w + (size_t)j * N;                                               \
            for (int n = n0; n < N; n++) o[n] += s * wj[n];                                   \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Forward, after the gates of timesteps 0..T-1 have been computed on the sigmoid scale      \
   (acts[:, :, 2] = σ(2 z_g)): turn g into tanh(z_g) = 2σ(2 z_g) - 1, run                   \
   c_t = f_t c_{t-1} + i_t g_t from c_init, and, when mean is not NULL, write the gate        \
   statistics of the first `rows` batch rows: mean (T, 4, H) and the fractions low / high    \
   (T, 4) in the bottom and top 10% of each gate's range. */                                 \
void lstm_cell_forward_##S(int T, int B, int H, real *acts, const real *c_init, real *c,   \
                           int rows, real *mean, real *low, real *high)                      \
{                                                                                             \
    const real *cp = c_init;                                                                  \
    for (int t = 0; t < T; t++) {                                                             \
        real *at = acts + (size_t)t * B * 4 * H;                                              \
        real *ct = c + (size_t)t * B * H;                                                     \
        if (mean) {                                                                           \
            real *mt = mean + (size_t)t * 4 * H;                                              \
            for (int k = 0; k < 4 * H; k++) mt[k] = 0;                                        \
            int nlow[4] = {0, 0, 0, 0}, nhigh[4] = {0, 0, 0, 0};                              \
            for (int b = 0; b < rows; b++) {                                                  \
                const real *ab = at + (size_t)b * 4 * H;                                      \
                for (int k = 0; k < 4; k++) {                                                 \
                    int lo = 0, hi = 0;                                                       \
                    for (int h = 0; h < H; h++) {                                             \
                        lo += ab[k * H + h] < (real)0.1;                                      \
                        hi += ab[k * H + h] > (real)0.9;                                      \
                    }                                                                         \
                    nlow[k] += lo;                                                            \
                    nhigh[k] += hi;                                                           \
                }                                                                             \
                for (int k = 0; k < 4 * H; k++) mt[k] += ab[k];                               \
            }                                                                                 \
            for (int k = 0; k < 4 * H; k++) mt[k] /= rows;                                    \
            for (int h = 0; h < H; h++) mt[2 * H + h] = 2 * mt[2 * H + h] - 1;                \
            for (int k = 0; k < 4; k++) {                                                     \
                low[t * 4 + k] = (real)nlow[k] / ((real)rows * H);                            \
                high[t * 4 + k] = (real)nhigh[k] / ((real)rows * H);                          \
            }                                                                                 \
        }                                                                                     \
        for (int b = 0; b < B; b++) {                                                         \
            real *ab = at + (size_t)b * 4 * H;                                                \
            const real *cpb = cp + (size_t)b * H;                                             \
            real *cb = ct + (size_t)b * H;                                                    \
            for (int h = 0; h < H; h++) {                                                     \
                real g = 2 * ab[2 * H + h] - 1;                                               \
                ab[2 * H + h] = g;                                                            \
                cb[h] = ab[H + h] * cpb[h] + ab[h] * g;                                       \
            }                                                                                 \
        }                                                                                     \
        cp = ct;                                                                              \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Backward: the reverse scan over t = T-1 … 0 (see _LSTMFamily in cells.py).                \
   dh_t = dout_t + dz_{t+1} W_hh, dc_t = dh_t ⊙ A_t + dc_{t+1} ⊙ f_{t+1},                      \
   dz_t = [dc_t ⊙ g σ'_i, dc_t ⊙ c_{t-1} σ'_f, dc_t ⊙ i (1 - g²), dh_t ⊙ tanh(c_t) σ'_o],     \
   with A = o (1 - tanh² c_t); no gradient crosses from t+1 to t when t+1 is a multiple of   \
   tbptt (> 0). carry (B, H) is scratch. */                                                  \
void lstm_cell_backward_##S(int T, int B, int H, const real *acts, const real *c,           \
                            const real *c0, const real *tanh_c, const real *dout,            \
                            const real *w_hh, int tbptt, real *dh, real *dc, real *dz,       \
                            real *carry)                                                      \
{                                                                                             \
    const size_t bh = (size_t)B * H, g4 = 4 * (size_t)H;                                      \
    for (int t = T - 1; t >= 0; t--) {                                                        \
        int flows = t < T - 1 && !(tbptt > 0 && (t + 1) % tbptt == 0);                        \
        real *dht = dh + t * bh;                                                              \
        if (flows)                                                                            \
            gemm_acc_##S(B, H, 4 * H, dz + (t + 1) * B * g4, 4 * H, w_hh, dout + t * bh, dht); \
        else                                                                                  \
            memcpy(dht, dout + t * bh, bh * sizeof(real));                                    \
        const real *cprev = t ? c + (t - 1) * bh : c0;                                        \
        for (int b = 0; b < B; b++) {                                                         \
            const real *a = acts + (t * (size_t)B + b) * g4;                                  \
            const real *cp = cprev + (size_t)b * H, *tc = tanh_c + t * bh + (size_t)b * H;   \
            const real *dhb = dht + (size_t)b * H;                                            \
            real *dcb = dc + t * bh + (size_t)b * H, *cr = carry + (size_t)b * H;             \
            real *z = dz + (t * (size_t)B + b) * g4;                                          \
            for (int h = 0; h < H; h++) {                                                     \
                real i = a[h], f = a[H + h], g = a[2 * H + h], o = a[3 * H + h];              \
                real d = dhb[h] * (o * (1 - tc[h] * tc[h]));                                  \
                if (flows) d += cr[h];                                                        \
                dcb[h] = d;                                                                   \
                z[h] = d * (g * (i - i * i));                                                 \
                z[H + h] = d * (cp[h] * (f - f * f));                                         \
                z[2 * H + h] = d * (i - i * (g * g));                                         \
                z[3 * H + h] = dhb[h] * (tc[h] * (o - o * o));                                \
                cr[h] = d * f;                                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

DEFINE_LSTM_KERNELS(float, f32)
DEFINE_LSTM_KERNELS(double, f64)
