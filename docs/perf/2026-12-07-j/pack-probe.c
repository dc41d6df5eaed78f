/* pack-probe THREADS M [EVICT]: the decoder linear layer's forward product (M x 3136 x 256)
 * with W^T packed by the multiply (NT) and read from a W^T stored row-major (NN), 50 calls,
 * medians of 15; EVICT megabytes of a buffer walked between calls push W out of the caches.
 * Build: gcc -O2 -fopenmp -Iinclude -Ilib pack-probe.c build/libcvae.a -lm */
#define _POSIX_C_SOURCE 200809L
#include "cvae_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int cmpd(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int th=argc>1?atoi(argv[1]):1; size_t EV=argc>3?(size_t)atoi(argv[3])<<18:0; float *ev=EV?malloc(EV*4):0; volatile float sink=0; size_t M=argc>2?atoi(argv[2]):64, N=3136,K=256;
  float *x=malloc(M*K*4),*W=malloc(N*K*4),*WT=malloc(N*K*4),*C=malloc(M*N*4);
  float *ws=aligned_alloc(64,((cvi_gemm_workspace_floats(th)*4+63)/64)*64);
  cvi_gemm_env env={CVI_GEMM_PATH_AUTO,th,ws};
  for(size_t i=0;i<M*K;i++)x[i]=(float)(i%7)/7;
  for(size_t i=0;i<N*K;i++)W[i]=(float)(i%11)/11;
  for(size_t o=0;o<N;o++)for(size_t k=0;k<K;k++)WT[k*N+o]=W[o*K+k];
  double t[2][15];
  for(int r=0;r<15;r++) for(int v=0;v<2;v++){
    double t0=now();
    double tev=0; for(int i=0;i<50;i++){ if(EV){double t1=now(); for(size_t q=0;q<EV;q+=16) ev[q]+=1.0f; sink+=ev[7]; tev+=now()-t1;}
      if(v==0) cvi_gemm(&env,0,1,M,N,K,1,x,K,W,K,0,C,N);
      else cvi_gemm(&env,0,0,M,N,K,1,x,K,WT,N,0,C,N);
    }
    t[v][r]=(now()-t0-tev)/50*1e6;
  }
  qsort(t[0],15,8,cmpd);qsort(t[1],15,8,cmpd);
  printf("M=%zu th=%d: NT (pack W^T) %.1f us, NN (W^T stored) %.1f us; flops %.1f MF\n",M,th,t[0][7],t[1][7],2.0*M*N*K/1e6);
}
