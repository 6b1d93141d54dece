// How fast this machine streams SmolLM2-135M's decoding weights (30 blocks of q, k, v, o, gate,
// up, down and the 576 x 49152 head: 538 MB of f32) through a one-row product, with the work
// split across threads two ways: by weight columns (each thread reads a piece of every row) and
// by weight rows (each thread reads one contiguous block, partial results added). The model of
// `bpo_model::linear`'s choice; no Burn involved.
//
//   gcc -O3 -march=native -fopenmp benches/compare/decode_bandwidth.c -o /tmp/decode_bandwidth
//   OMP_NUM_THREADS=2 /tmp/decode_bandwidth
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct { size_t k, n; float *w; } Matrix;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// y = x W for W [k, n] row-major; thread t computes columns [n t / T, n (t + 1) / T).
static void by_columns(const Matrix *m, const float *x, float *y) {
#pragma omp parallel
  {
    int threads = omp_get_num_threads(), id = omp_get_thread_num();
    size_t c0 = m->n * id / threads, c1 = m->n * (id + 1) / threads;
    for (size_t j = c0; j < c1; j++) y[j] = 0;
    for (size_t r = 0; r < m->k; r++)
      for (size_t j = c0; j < c1; j++) y[j] += x[r] * m->w[r * m->n + j];
  }
}

// y = x W; thread t sums rows [k t / T, k (t + 1) / T) into its own partial result.
static void by_rows(const Matrix *m, const float *x, float *y, float *partial) {
#pragma omp parallel
  {
    int threads = omp_get_num_threads(), id = omp_get_thread_num();
    size_t r0 = m->k * id / threads, r1 = m->k * (id + 1) / threads;
    float *p = partial + (size_t)id * m->n;
    for (size_t j = 0; j < m->n; j++) p[j] = 0;
    for (size_t r = r0; r < r1; r++)
      for (size_t j = 0; j < m->n; j++) p[j] += x[r] * m->w[r * m->n + j];
#pragma omp barrier
    size_t c0 = m->n * id / threads, c1 = m->n * (id + 1) / threads;
    for (size_t j = c0; j < c1; j++) {
      float s = 0;
      for (int t = 0; t < threads; t++) s += partial[(size_t)t * m->n + j];
      y[j] = s;
    }
  }
}

int main(void) {
  const size_t block[7][2] = {{576, 576},  {576, 192},  {576, 192}, {576, 576},
                              {576, 1536}, {576, 1536}, {1536, 576}};
  Matrix ms[30 * 7 + 1];
  size_t count = 0, bytes = 0;
  for (int layer = 0; layer < 30; layer++)
    for (int i = 0; i < 7; i++) ms[count++] = (Matrix){block[i][0], block[i][1], NULL};
  ms[count++] = (Matrix){576, 49152, NULL};
  for (size_t i = 0; i < count; i++) {
    size_t size = ms[i].k * ms[i].n;
    ms[i].w = malloc(size * sizeof(float));
    for (size_t j = 0; j < size; j++) ms[i].w[j] = (float)(j % 13) * 0.01f;
    bytes += size * sizeof(float);
  }
  static float x[1536], y[49152];
  float *partial = malloc((size_t)omp_get_max_threads() * 49152 * sizeof(float));
  for (int i = 0; i < 1536; i++) x[i] = 0.5f;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (size_t i = 0; i < count; i++) by_columns(&ms[i], x, y);
    double t1 = now();
    for (size_t i = 0; i < count; i++) by_rows(&ms[i], x, y, partial);
    double t2 = now();
    printf("%d threads, %.0f MB per token: by columns %.1f ms (%.1f GB/s), by rows %.1f ms (%.1f GB/s)\n",
           omp_get_max_threads(), bytes / 1e6, (t1 - t0) * 1e3, bytes / (t1 - t0) / 1e9,
           (t2 - t1) * 1e3, bytes / (t2 - t1) / 1e9);
  }
  return 0;
}
