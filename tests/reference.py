"""The network unrolled over time with autograd, on the cells' plain equations.

Every timestep is its cell's ``reference_step`` (gradviz.engine.model.reference); every h_t
and c_t is a separate tensor with ``retain_grad()``, so after ``backward()`` its ``.grad``
is the total gradient reaching it — what gradviz captures.
"""
import torch


def unrolled(net, x, tbptt=0):
    """Run ``net``'s weights over x (T, B, I) with autograd.

    Returns the top output (T, B, D·H) and hs[k][d], cs[k][d]: lists over *time order* t of
    the h_t / c_t tensors (cs entries None for cells without a cell state). With tbptt > 0
    the state is detached every tbptt steps of each direction's processing order.
    """
    T, B, _ = x.shape
    H = net.hidden
    hs, cs = [], []
    layer_in = x
    for k in range(net.layers):
        outs, hk, ck = [], [], []
        for d in range(net.directions):
            p = net.layer_params(k, d)
            xin = layer_in if d == 0 else layer_in.flip(0)
            h = torch.zeros(B, H, dtype=x.dtype)
            c = torch.zeros(B, H, dtype=x.dtype)
            h_list, c_list = [], []
            for t in range(T):
                if tbptt and t % tbptt == 0:
                    h, c = h.detach(), c.detach()
                step = net.cell.reference_step(p, xin[t], h, c)
                h, c_new = step.h, step.c
                if h.requires_grad:
                    h.retain_grad()
                h_list.append(h)
                if c_new is not None:
                    if c_new.requires_grad:
                        c_new.retain_grad()
                    c = c_new
                c_list.append(c_new)
            if d == 1:
                h_list.reverse()
                c_list.reverse()
            hk.append(h_list)
            ck.append(c_list)
            outs.append(torch.stack(h_list))
        hs.append(hk)
        cs.append(ck)
        layer_in = torch.cat(outs, -1)
    return layer_in, hs, cs
