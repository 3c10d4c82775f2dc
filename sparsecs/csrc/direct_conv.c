/* Direct sparse convolution on NCHW float32, the weight in CSR over [O, C/groups * KH * KW].

   out[b, o] = bias[o] + sum over the nonzeros w of row o of  w * (input plane c of group(o),
   shifted by (kh - ph, kw - pw) and subsampled by the stride), then ReLU when asked. Each
   nonzero costs one pass over the output rows it reaches; zeros cost nothing, so the work is
   (nonzero weights) x (output pixels) instead of (all weights) x (output pixels). A Linear
   is the 1x1 case with H = W = 1. Built by sparse_infer.py with the system C compiler. */
#include <stdint.h>
#include <stddef.h>

/* p: B is passed apart; the rest of the shape, fixed per layer:
   C, H, W, O, KH, KW, sh, sw, ph, pw, groups, Ho, Wo, relu */
void sparse_conv2d(const float *restrict x, float *restrict out, const float *restrict bias,
                   const int32_t *restrict rowptr, const int32_t *restrict col,
                   const float *restrict val, int B, const int32_t *restrict p, int nthreads)
{
    const int C = p[0], H = p[1], W = p[2], O = p[3], KH = p[4], KW = p[5];
    const int sh = p[6], sw = p[7], ph = p[8], pw = p[9], G = p[10], Ho = p[11], Wo = p[12];
    const int relu = p[13];
    const int Cg = C / G, Og = O / G, KK = KH * KW;
    const ptrdiff_t plane_in = (ptrdiff_t)H * W, plane_out = (ptrdiff_t)Ho * Wo;
    (void)nthreads;
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (int b = 0; b < B; b++) {
        for (int o = 0; o < O; o++) {
            float *restrict y = out + ((ptrdiff_t)b * O + o) * plane_out;
            const float bo = bias ? bias[o] : 0.0f;
            for (ptrdiff_t i = 0; i < plane_out; i++) y[i] = bo;
            const float *xg = x + ((ptrdiff_t)b * C + (ptrdiff_t)(o / Og) * Cg) * plane_in;
            for (int k = rowptr[o]; k < rowptr[o + 1]; k++) {
                const int c = col[k] / KK, r = col[k] % KK, kh = r / KW, kw = r % KW;
                const float w = val[k];
                /* output rows / columns whose input pixel lies inside the (unpadded) plane */
                const int dh = kh - ph, dw = kw - pw;
                const int oh0 = dh >= 0 ? 0 : (-dh + sh - 1) / sh;
                const int oh1 = H - 1 - dh < 0 ? 0 : (H - 1 - dh) / sh + 1;
                const int ow0 = dw >= 0 ? 0 : (-dw + sw - 1) / sw;
                const int ow1 = W - 1 - dw < 0 ? 0 : (W - 1 - dw) / sw + 1;
                const int hend = oh1 < Ho ? oh1 : Ho, wend = ow1 < Wo ? ow1 : Wo;
                const float *xc = xg + (ptrdiff_t)c * plane_in;
                if (sh == 1 && sw == 1 && W == Wo && hend > oh0 && wend > ow0) {
                    /* rows as long as the plane (W == Wo): one contiguous pass from the first
                       valid output pixel to the last; the pixels it adds that wrap around a
                       row edge are saved before and put back after (exact) */
                    float keep[256];
                    const int wrap = dw > 0 ? W - wend : ow0;     /* columns that wrap */
                    const int nrows = hend - oh0 - 1;
                    if (wrap * nrows <= 256) {
                        const int c0 = dw > 0 ? wend : 0, r0 = dw > 0 ? oh0 : oh0 + 1;
                        int n = 0;
                        for (int r = 0; r < nrows; r++)
                            for (int j = 0; j < wrap; j++) keep[n++] = y[(ptrdiff_t)(r0 + r) * Wo + c0 + j];
                        const ptrdiff_t i0 = (ptrdiff_t)oh0 * Wo + ow0, i1 = (ptrdiff_t)(hend - 1) * Wo + wend;
                        const float *restrict xs = xc + (ptrdiff_t)dh * W + dw;
                        for (ptrdiff_t i = i0; i < i1; i++) y[i] += w * xs[i];
                        n = 0;
                        for (int r = 0; r < nrows; r++)
                            for (int j = 0; j < wrap; j++) y[(ptrdiff_t)(r0 + r) * Wo + c0 + j] = keep[n++];
                        continue;
                    }
                }
                for (int oh = oh0; oh < hend; oh++) {
                    const float *restrict xr = xc + (ptrdiff_t)(oh * sh + dh) * W + dw;
                    float *restrict yr = y + (ptrdiff_t)oh * Wo;
                    if (sw == 1) {
                        for (int ow = ow0; ow < wend; ow++) yr[ow] += w * xr[ow];
                    } else {
                        for (int ow = ow0; ow < wend; ow++) yr[ow] += w * xr[(ptrdiff_t)ow * sw];
                    }
                }
            }
            if (relu)
                for (ptrdiff_t i = 0; i < plane_out; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        }
    }
}
