/* The recurrent cells' sequential loops, compiled (native.py builds and loads this file).
 *
 * PyTorch runs a timestep's small operations one dispatch at a time; at these sizes the
 * dispatch, not the arithmetic, is the cost. The functions here run the loops that cannot
 * be batched over time, one call per layer: the LSTM's cell-state recurrence (with its gate
 * statistics) and the reverse scans of the LSTM, the GRU and the plain RNN. Everything that
 * can be batched over time (gate products, transcendental functions, weight gradients)
 * stays in PyTorch. The equations are those of the PyTorch code in cells.py, which computes
 * the same numbers where this file cannot be built.
 *
 * Layouts are C-contiguous, as in cells.py: T timesteps, B batch rows, H units. Gradients of
 * pre-activations dz are (T, B, G·H) in PyTorch's gate order; w_hh is weight_hh (G·H, H).
 * No -ffast-math: NaN and inf must propagate as they do in PyTorch.
 *
 * The file includes itself (by name) once per floating-point type: `real` is the type and S(name)
 * gives each function its type suffix (_f32, _f64).
 */
#ifndef real
#include <stddef.h>
#include <string.h>

#define real float
#define S(name) name##_f32
#include "_native.c"
#undef real
#undef S

#define real double
#define S(name) name##_f64
#include "_native.c"
#undef real
#undef S

#else

/* True when no gradient crosses from step t+1 back into step t (the end, or a cut every
   `tbptt` steps). */
static inline int S(stops)(int t, int T, int tbptt)
{
    return t == T - 1 || (tbptt > 0 && (t + 1) % tbptt == 0);
}

/* Vectors of 32 bytes (8 floats, 4 doubles); the compiler splits them where it has to. */
typedef real S(vec) __attribute__((vector_size(32)));
enum { S(VL) = (int)(32 / sizeof(real)), S(KN) = 4 * (int)(32 / sizeof(real)) };

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

/* out[b, n] = base[b, n] + sum_j a[b, j] w[j, n] for b < B, n < N, j < K. out and base have
   row stride N, a has lda, w has N. A block of 4 rows by KN columns (4 vectors a row) is
   kept in 16 vector registers while j runs. */
static void S(gemm_acc)(int B, int N, int K, const real *restrict a, int lda,
                        const real *restrict w, const real *restrict base, real *restrict out)
{
    const int VL = S(VL), KN = S(KN);
    int n0 = 0;
    for (; n0 + KN <= N; n0 += KN) {
        int b = 0;
        for (; b + 4 <= B; b += 4) {
            S(vec) acc[4][4];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++)
                    acc[r][v] = S(load)(base + (size_t)(b + r) * N + n0 + v * VL);
            const real *a0 = a + (size_t)b * lda;
            for (int j = 0; j < K; j++) {
                const real *wj = w + (size_t)j * N + n0;
                S(vec) wv[4];
                for (int v = 0; v < 4; v++) {
                    wv[v] = S(load)(wj + v * VL);
                    S(in_register)(&wv[v]);
                }
                for (int r = 0; r < 4; r++) {
                    real s = a0[(size_t)r * lda + j];
                    for (int v = 0; v < 4; v++) acc[r][v] += s * wv[v];
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++)
                    S(store)(out + (size_t)(b + r) * N + n0 + v * VL, acc[r][v]);
        }
        for (; b < B; b++) {
            S(vec) acc[4];
            for (int v = 0; v < 4; v++) acc[v] = S(load)(base + (size_t)b * N + n0 + v * VL);
            for (int j = 0; j < K; j++) {
                real s = a[(size_t)b * lda + j];
                for (int v = 0; v < 4; v++)
                    acc[v] += s * S(load)(w + (size_t)j * N + n0 + v * VL);
            }
            for (int v = 0; v < 4; v++) S(store)(out + (size_t)b * N + n0 + v * VL, acc[v]);
        }
    }
    /* Columns left over when N is not a multiple of KN. */
    for (int b = 0; b < B && n0 < N; b++) {
        real *o = out + (size_t)b * N;
        for (int n = n0; n < N; n++) o[n] = base[(size_t)b * N + n];
        for (int j = 0; j < K; j++) {
            real s = a[(size_t)b * lda + j];
            const real *wj = w + (size_t)j * N;
            for (int n = n0; n < N; n++) o[n] += s * wj[n];
        }
    }
}

/* dh_t = dout_t + dz_{t+1} W_hh where the gradient flows from t+1, else dout_t. */
static void S(dh_step)(int t, int T, int B, int H, int G, int tbptt, const real *dz,
                       const real *w_hh, const real *dout, real *dh)
{
    const size_t bh = (size_t)B * H;
    if (S(stops)(t, T, tbptt))
        memcpy(dh + t * bh, dout + t * bh, bh * sizeof(real));
    else
        S(gemm_acc)(B, H, G * H, dz + (t + 1) * bh * G, G * H, w_hh, dout + t * bh, dh + t * bh);
}

/* LSTM forward, after the gates of timesteps 0..T-1 have been computed on the sigmoid scale
   (acts (T, B, 4, H), i, f, g, o, with acts[:, :, 2] = σ(2 z_g)): turns g into
   tanh(z_g) = 2σ(2 z_g) - 1, runs c_t = f_t c_{t-1} + i_t g_t from c_init into c (T, B, H)
   and, when mean is not NULL, writes the gate statistics of the first `rows` batch rows:
   mean (T, 4, H) and the fractions low / high (T, 4) in the bottom / top 10% of each
   gate's range. */
void S(lstm_cell_forward)(int T, int B, int H, real *restrict acts, const real *c_init,
                          real *c, int rows, real *restrict mean, real *restrict low,
                          real *restrict high)
{
    const real *cp = c_init;
    for (int t = 0; t < T; t++) {
        real *at = acts + (size_t)t * B * 4 * H;
        real *ct = c + (size_t)t * B * H;
        if (mean) {
            real *mt = mean + (size_t)t * 4 * H;
            for (int k = 0; k < 4 * H; k++) mt[k] = 0;
            int nlow[4] = {0, 0, 0, 0}, nhigh[4] = {0, 0, 0, 0};
            for (int b = 0; b < rows; b++) {
                const real *ab = at + (size_t)b * 4 * H;
                for (int k = 0; k < 4; k++) {
                    int lo = 0, hi = 0;
                    for (int h = 0; h < H; h++) {
                        lo += ab[k * H + h] < (real)0.1;
                        hi += ab[k * H + h] > (real)0.9;
                    }
                    nlow[k] += lo;
                    nhigh[k] += hi;
                }
                for (int k = 0; k < 4 * H; k++) mt[k] += ab[k];
            }
            for (int k = 0; k < 4 * H; k++) mt[k] /= rows;
            for (int h = 0; h < H; h++) mt[2 * H + h] = 2 * mt[2 * H + h] - 1;
            for (int k = 0; k < 4; k++) {
                low[t * 4 + k] = (real)nlow[k] / ((real)rows * H);
                high[t * 4 + k] = (real)nhigh[k] / ((real)rows * H);
            }
        }
        for (int b = 0; b < B; b++) {
            real *restrict ab = at + (size_t)b * 4 * H;
            const real *restrict cpb = cp + (size_t)b * H;
            real *restrict cb = ct + (size_t)b * H;
            for (int h = 0; h < H; h++) {
                real g = 2 * ab[2 * H + h] - 1;
                ab[2 * H + h] = g;
                cb[h] = ab[H + h] * cpb[h] + ab[h] * g;
            }
        }
        cp = ct;
    }
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

/* LSTM reverse scan over t = T-1 … 0 (see _LSTMFamily in cells.py):
   dh_t = dout_t + dz_{t+1} W_hh, dc_t = dh_t ⊙ A_t + dc_{t+1} ⊙ f_{t+1}, A = o (1 - tanh² c),
   dz_t = [dc_t ⊙ g σ'_i, dc_t ⊙ c_{t-1} σ'_f, dc_t ⊙ i (1 - g²), dh_t ⊙ tanh(c_t) σ'_o].
   acts holds i, f, g, o (g = tanh); carry (B, H) is scratch for dc_{t+1} ⊙ f_{t+1}. */
void S(lstm_cell_backward)(int T, int B, int H, const real *acts, const real *c,
                           const real *c0, const real *tanh_c, const real *dout,
                           const real *w_hh, int tbptt, real *dh, real *dc, real *dz,
                           real *carry)
{
    const size_t bh = (size_t)B * H, g4 = 4 * (size_t)H;
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, 4, tbptt, dz, w_hh, dout, dh);
        if (S(stops)(t, T, tbptt))      /* nothing flows from t+1: no carry */
            memset(carry, 0, bh * sizeof(real));
        const real *cprev = t ? c + (t - 1) * bh : c0;
        for (int b = 0; b < B; b++) {
            const size_t row = t * (size_t)B + b;
            S(lstm_row_backward)(H, acts + row * g4, cprev + (size_t)b * H, tanh_c + row * H,
                                 dh + row * H, dc + row * H, carry + (size_t)b * H,
                                 dz + row * g4);
        }
    }
}

/* out[k, h] = d[h] k[k, h] for k < G (one batch row): vectorized as its own function. */
static inline void S(scale_gates)(int H, int G, const real *restrict d, const real *restrict k,
                                  real *restrict out)
{
    for (int g = 0; g < G; g++)
        for (int h = 0; h < H; h++)
            out[g * H + h] = d[h] * k[g * H + h];
}

/* GRU reverse scan (see GRUCell in cells.py): with dzh_t = dh_t ⊙ Kh_t (T, B, 3H),
   dh_t = dout_t + dzh_{t+1} W_hh + dh_{t+1} ⊙ z_{t+1}. z is (T, B, H), kh (T, B, 3, H). */
void S(gru_cell_backward)(int T, int B, int H, const real *z, const real *kh,
                          const real *dout, const real *w_hh, int tbptt, real *dh, real *dzh)
{
    const size_t bh = (size_t)B * H;
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, 3, tbptt, dzh, w_hh, dout, dh);
        const int flows = !S(stops)(t, T, tbptt);
        for (int b = 0; b < B; b++) {
            const size_t row = t * (size_t)B + b;
            real *restrict d = dh + row * H;
            if (flows) {
                const real *restrict dn = dh + row * H + bh, *restrict zn = z + row * H + bh;
                for (int h = 0; h < H; h++) d[h] += dn[h] * zn[h];
            }
            S(scale_gates)(H, 3, d, kh + row * 3 * H, dzh + row * 3 * H);
        }
    }
}

/* Plain RNN reverse scan: dh_t = dout_t + dz_{t+1} W_hh, dz_t = dh_t ⊙ φ'_t. */
void S(rnn_cell_backward)(int T, int B, int H, const real *dphi, const real *dout,
                          const real *w_hh, int tbptt, real *dh, real *dz)
{
    const size_t bh = (size_t)B * H;
    for (int t = T - 1; t >= 0; t--) {
        S(dh_step)(t, T, B, H, 1, tbptt, dz, w_hh, dout, dh);
        const real *restrict d = dh + t * bh, *restrict p = dphi + t * bh;
        real *restrict o = dz + t * bh;
        for (size_t k = 0; k < bh; k++) o[k] = d[k] * p[k];
    }
}

#endif
