#!/usr/bin/env python3
"""PyTorch's version of libcvae's seed VAE, for side-by-side comparisons.

Same model (conv 1->32->64, linear 3136->256->2L; linear L->256->3136,
conv-transpose 64->32->1), same loss (Bernoulli NLL from logits, summed over
pixels, plus the analytic KL, averaged over the batch), Adam 1e-3, batch 128,
a new shuffle every epoch, PyTorch's default initialisation. Prints the same
per-epoch figures as cvae-train. Needs Debian's python3-torch (run it with
/usr/bin/python3); not part of the tests.

usage: pytorch_vae.py DATA_DIR [EPOCHS=10] [SEED=1] [THREADS=1]
"""
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT = 16


def load_idx_images(path):
    data = open(path, 'rb').read()
    count, rows, cols = (int.from_bytes(data[i:i + 4], 'big') for i in (4, 8, 12))
    pixels = np.frombuffer(data[16:], dtype=np.uint8).reshape(count, 1, rows, cols)
    return torch.tensor(pixels / 255.0, dtype=torch.float32)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 4, 2, 1)
        self.c2 = nn.Conv2d(32, 64, 4, 2, 1)
        self.l1 = nn.Linear(3136, 256)
        self.l2 = nn.Linear(256, 2 * LATENT)
        self.d1 = nn.Linear(LATENT, 256)
        self.d2 = nn.Linear(256, 3136)
        self.t1 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.t2 = nn.ConvTranspose2d(32, 1, 4, 2, 1)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x)))).flatten(1)
        h = self.l2(F.relu(self.l1(h)))
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        d = F.relu(self.d2(F.relu(self.d1(z)))).reshape(-1, 64, 7, 7)
        return self.t2(F.relu(self.t1(d))), mu, logvar


def losses(model, x):
    logits, mu, logvar = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction='sum')
    kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
    return recon, kl


def main():
    data_dir = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    torch.manual_seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    train = load_idx_images(data_dir + '/train-images-idx3-ubyte')
    test = load_idx_images(data_dir + '/t10k-images-idx3-ubyte')
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, epochs + 1):
        start, total = time.time(), 0.0
        order = torch.randperm(len(train))
        for i in range(0, len(train), 128):
            x = train[order[i:i + 128]]
            recon, kl = losses(model, x)
            opt.zero_grad()
            ((recon + kl) / len(x)).backward()
            opt.step()
            total += (recon + kl).item()
        seconds = time.time() - start
        with torch.no_grad():
            r = k = 0.0
            for i in range(0, len(test), 1000):
                recon, kl = losses(model, test[i:i + 1000])
                r, k = r + recon.item(), k + kl.item()
        n = len(test)
        print('epoch %d/%d  train %.2f  test %.2f (recon %.2f + kl %.2f)  %.1f s  %.0f img/s'
              % (epoch, epochs, total / len(train), (r + k) / n, r / n, k / n, seconds,
                 len(train) / seconds), flush=True)


if __name__ == '__main__':
    main()
