#!/usr/bin/env python3
"""PyTorch's side of cvae-bench, to run in the same sitting and compare.

With cvae-bench's protocol (a warm-up of about a quarter of the target,
which also prices one call, then --repeats runs of enough calls for about
--seconds each; median, min, max) it measures training images/s (Bernoulli
NLL from logits + analytic KL, averaged over the batch; Adam 1e-3) of the
seed VAE (pytorch_vae.py's class) and of the PyTorch examples' MLP VAE
(784-400-20), batches 32 to 256; sampling 64 digits (ms) and encoding +
decoding 10,000 images (images/s) with the seed model; peak memory. The
tables have the layout of cvae-bench's. Needs Debian's python3-torch (run it
with /usr/bin/python3); not part of the tests. Random pixels unless --data.
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_interop_threads(1)  # must come before any parallel work
DEFAULT_THREADS = torch.get_num_threads()  # what torch would use unasked

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ left in docs/perf
from pytorch_vae import LATENT, VAE, losses  # noqa: E402

POOL_IMAGES = 1024  # training inputs, cycled: at least the largest batch
SAMPLE_COUNT = 64   # digits per prior sample
MAX_BATCH = 128     # chunk of encoding/decoding, as the C model's max batch
MLP_LATENT = 20


class MLPVAE(nn.Module):
    """PyTorch's examples/vae model, returning logits (not sigmoid) so that
    pytorch_vae.losses applies to it as to the seed model."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, MLP_LATENT)
        self.fc22 = nn.Linear(400, MLP_LATENT)
        self.fc3 = nn.Linear(MLP_LATENT, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.fc4(F.relu(self.fc3(z))).reshape(-1, 1, 28, 28), mu, logvar


# The seed model's two halves, layer by layer as in VAE.forward.
def seed_encode(m, x):
    h = F.relu(m.c2(F.relu(m.c1(x)))).flatten(1)
    return m.l2(F.relu(m.l1(h)))[:, :LATENT]  # mu only, as cvae_model_encode


def seed_decode(m, z):
    d = F.relu(m.d2(F.relu(m.d1(z)))).reshape(-1, 64, 7, 7)
    return torch.sigmoid(m.t2(F.relu(m.t1(d))))


# ------------------------------------------------------------------ timing

def summarize(samples):
    """(median, min, max) of seconds per call."""
    s, n = sorted(samples), len(samples)
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return median, s[0], s[-1]


def measure(work, repeats, target):
    """work(calls) runs `calls` calls. Warm-up, doubling the calls, until
    target / 4 has passed, which also prices one call; then `repeats` runs of
    enough calls for about target seconds. As cvae-bench's measure()."""
    start, calls, done = time.perf_counter(), 1, 0
    while True:
        work(calls)
        done += calls
        calls *= 2
        if time.perf_counter() - start >= target / 4:
            break
    per_call = (time.perf_counter() - start) / done
    calls = int(target / per_call + 0.5) if per_call > 0 and target / per_call > 1 else 1
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work(calls)
        samples.append((time.perf_counter() - t0) / calls)
    return summarize(samples)


# ---------------------------------------------------------------- sections

def bench_training(o, pool, real):
    batches = (32, 128) if o.quick else (32, 64, 128, 256)
    print('\n== training: images/s, Adam, %s inputs (median, min, max of %d x %.2g s; '
          'speed-up over the first thread count)' % ('MNIST' if real else 'random', o.repeats,
                                                      o.seconds))
    print('%-6s %6s %8s %10s %10s %10s %9s' % ('model', 'batch', 'threads', 'median', 'min',
                                                'max', 'speed-up'))
    for name, cls in (('seed', VAE), ('mlp', MLPVAE)):
        for batch in batches:
            torch.manual_seed(1)  # a new model per row group, as cvae-bench
            model = cls()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            nbatches, step = POOL_IMAGES // batch, [0]

            def train_steps(calls):
                for _ in range(calls):
                    k = step[0] % nbatches
                    step[0] += 1
                    x = pool[k * batch:(k + 1) * batch]
                    recon, kl = losses(model, x)
                    opt.zero_grad(set_to_none=True)
                    ((recon + kl) / batch).backward()
                    opt.step()

            first = None
            for threads in o.threads:
                torch.set_num_threads(threads)
                median, tmin, tmax = measure(train_steps, o.repeats, o.seconds)
                first = first or median
                print('%-6s %6d %8d %10.0f %10.0f %10.0f %8.2fx'
                      % (name, batch, threads, batch / median, batch / tmax, batch / tmin,
                         first / median), flush=True)


def bench_sampling(o, images, real):
    torch.manual_seed(1)
    model = VAE().eval()
    n = len(images)

    def sample_calls(calls):
        for _ in range(calls):
            seed_decode(model, torch.randn(SAMPLE_COUNT, LATENT))

    def encode_decode_calls(calls):
        # In chunks of the max batch, as cvae_model_encode and _decode.
        for _ in range(calls):
            mu = torch.cat([seed_encode(model, images[i:i + MAX_BATCH])
                            for i in range(0, n, MAX_BATCH)])
            for i in range(0, n, MAX_BATCH):
                seed_decode(model, mu[i:i + MAX_BATCH])

    print('\n== seed model (max batch %d): sampling %d digits (ms) and encoding + decoding '
          '%d %s images (images/s)' % (MAX_BATCH, SAMPLE_COUNT, n, 'MNIST' if real else 'random'))
    print('%-8s %9s %9s %9s %10s %10s %10s' % ('threads', 'sample', 'min', 'max', 'enc+dec',
                                                'min', 'max'))
    with torch.no_grad():
        for threads in o.threads:
            torch.set_num_threads(threads)
            ts = measure(sample_calls, o.repeats, o.seconds / 5)
            te = measure(encode_decode_calls, o.repeats, o.seconds)
            print('%-8d %9.2f %9.2f %9.2f %10.0f %10.0f %10.0f'
                  % (threads, 1e3 * ts[0], 1e3 * ts[1], 1e3 * ts[2], n / te[0], n / te[2],
                     n / te[1]), flush=True)


# -------------------------------------------------------------------- main

def parse_options():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', metavar='DIR', help='MNIST directory (default: random pixels)')
    p.add_argument('--repeats', type=int, metavar='N', help='timed repeats per figure (default 5)')
    p.add_argument('--seconds', type=float, metavar='X',
                   help='work per repeat, in seconds (default 0.5)')
    p.add_argument('--threads', default='1,2', metavar='LIST',
                   help='thread counts to compare (default 1,2)')
    p.add_argument('--quick', action='store_true',
                   help='batches 32 and 128, 3 repeats of 0.1 s, 500 images: a smoke run')
    p.add_argument('--only', choices=('train', 'sample'), help='one section only')
    o = p.parse_args()
    counts = o.threads.split(',')
    if not all(t.isdigit() and int(t) > 0 for t in counts):
        p.error('--threads wants a list of counts like 1,2')
    o.threads = [int(t) for t in counts]
    # --quick changes the defaults only: explicit values still win.
    o.repeats = (3 if o.quick else 5) if o.repeats is None else o.repeats
    o.seconds = (0.1 if o.quick else 0.5) if o.seconds is None else o.seconds
    if not 1 <= o.repeats <= 100 or not 0.001 <= o.seconds <= 60:
        p.error('--repeats wants 1 to 100, --seconds 0.001 to 60')
    return o


def read_idx_images(path, count):
    """The first `count` images of an idx3 file as floats in [0, 1]; reads
    only those, so the peak memory is not the whole file's."""
    with open(path, 'rb') as f:
        head = f.read(16)
        n, rows, cols = (int.from_bytes(head[i:i + 4], 'big') for i in (4, 8, 12))
        count = min(count, n)
        data = bytearray(f.read(count * rows * cols))
    return torch.frombuffer(data, dtype=torch.uint8).reshape(count, 1, rows, cols).float() / 255


def load_inputs(o):
    """Training pool and images to encode: MNIST (train; t10k to encode if
    present) when --data has it, else random multiples of 1/255 in [0, 1]."""
    count = 500 if o.quick else 10000
    train = o.data and os.path.join(o.data, 'train-images-idx3-ubyte')
    if train and os.path.exists(train):
        test = os.path.join(o.data, 't10k-images-idx3-ubyte')
        encode = read_idx_images(test if os.path.exists(test) else train, count)
        return read_idx_images(train, POOL_IMAGES), encode, True
    if o.data:
        print('pytorch_bench: note: no MNIST files in %s, using random images' % o.data,
              file=sys.stderr)
    g = torch.Generator().manual_seed(3)
    pool = torch.rand(POOL_IMAGES + count, 1, 28, 28, generator=g).mul(256).floor().clamp(max=255)
    pool /= 255
    return pool[:POOL_IMAGES].clone(), pool[POOL_IMAGES:].clone(), False


def library_summary():
    """The parallel_info lines naming the backend, OpenMP and MKL, and the
    BLAS: the build's BLAS_INFO and the libblas this process mapped."""
    keep = ('backend', 'OpenMP', 'MKL')
    lines = [s.strip() for s in torch.__config__.parallel_info().splitlines()
             if any(k in s for k in keep) and 'omp_get' not in s and 'NUM_THREADS' not in s]
    blas = [w.rstrip(',') for w in torch.__config__.show().split() if w.startswith('BLAS_INFO')]
    torch.ones(64, 64) @ torch.ones(64, 64)  # make sure any BLAS is loaded
    with open('/proc/self/maps') as f:  # Linux, as the rest of libcvae's tooling
        libs = sorted({m.split()[-1] for m in f if 'blas' in m.lower() and '/' in m})
    return '; '.join(lines + blas + libs)


def main():
    o = parse_options()
    print('pytorch_bench: torch %s, %d cores online, threads %s; repeats %d x %.2g s'
          % (torch.__version__, os.cpu_count(), ','.join(map(str, o.threads)), o.repeats,
             o.seconds))
    print('  %s' % library_summary(), flush=True)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pool, encode, real = load_inputs(o)
    if o.only in (None, 'train'):
        bench_training(o, pool, real)
    if o.only in (None, 'sample'):
        bench_sampling(o, encode, real)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print('\npeak resident memory: %.1f MiB (%.1f MiB once torch was loaded)'
          % (rss / 1024, rss_start / 1024))
    print('threads measured: %s (torch by default would use %d)'
          % (','.join(map(str, o.threads)), DEFAULT_THREADS))


if __name__ == '__main__':
    main()
