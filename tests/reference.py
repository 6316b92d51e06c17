"""An unrolled autograd reference for every cell, written from the equations.

Every h_t and c_t is a separate tensor with ``retain_grad()``, so after ``backward()`` its
``.grad`` is the total gradient reaching it — what gradviz captures.
"""
import torch


def cell_step(cell, p, x_t, h, c):
    H = h.shape[-1]
    z_x = x_t @ p["weight_ih"].t() + p["bias_ih"]
    z_h = h @ p["weight_hh"].t() + p["bias_hh"]
    if cell in ("rnn-tanh", "rnn-relu"):
        act = torch.tanh if cell == "rnn-tanh" else torch.relu
        return act(z_x + z_h), None
    if cell == "gru":
        xr, xz, xn = z_x.split(H, -1)
        hr, hz, hn = z_h.split(H, -1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None
    z = z_x + z_h
    if cell == "lstm":
        zi, zf, zg, zo = z.split(H, -1)
        i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
        c = f * c + i * g
    elif cell == "lstm-peephole":
        zi, zf, zg, zo = z.split(H, -1)
        wci, wcf, wco = p["weight_ch"].split(H)
        i = torch.sigmoid(zi + wci * c)
        f = torch.sigmoid(zf + wcf * c)
        g = torch.tanh(zg)
        c = f * c + i * g
        o = torch.sigmoid(zo + wco * c)
    elif cell == "lstm-coupled":
        zf, zg, zo = z.split(H, -1)
        f, g, o = torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
        c = f * c + (1 - f) * g
    else:
        raise ValueError(cell)
    return o * torch.tanh(c), c


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
                h, c_new = cell_step(net.cell_name, p, xin[t], h, c)
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
