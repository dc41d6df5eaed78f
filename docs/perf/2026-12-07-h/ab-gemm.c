/* ab-gemm THREADS REPEATS: the seed model's 24 products of a B128 step, timed
 * alternately on an older gemm.c (its object's symbols renamed old_*) and on
 * the library's, REPEATS times each; medians per product and the total
 * weighted as a step issues them. Alternating makes the ratio robust to a
 * machine whose speed drifts from minute to minute. Build (OLD = a worktree):
 *   F="-std=c99 -O3 -fopenmp -fPIC -fvisibility=hidden -fno-math-errno
 *      -falign-functions=64 -ffp-contract=fast"   (the Makefile's lib flags)
 *   cc $F -I$OLD/include -I$OLD/lib -c $OLD/lib/gemm.c -o old.o
 *   nm --defined-only -g old.o | awk '{print $3" old_"$3}' > redef.txt
 *   objcopy --redefine-syms=redef.txt old.o old_r.o
 *   gcc -O2 -fopenmp -Iinclude -Ilib ab-gemm.c old_r.o build/libcvae.a -lm */
#define _POSIX_C_SOURCE 200809L
#include "cvae_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
void old_cvi_gemm(const cvi_gemm_env *env, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                  const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
struct sh { const char *n; int ta, tb; long m, n_, k; float beta; double calls; };
/* the 24 products of a B128 step: shapes per call and calls per batch */
static const struct sh S[] = {
 {"c1 fwd",0,0,32,8036,16,0,128.0/41},{"c1 dw",0,1,32,16,8036,1,128.0/41},{"c1 di",1,0,16,8036,32,0,128.0/41},
 {"c2 fwd",0,0,64,245,512,0,128.0/5},{"c2 dw",0,1,64,512,245,1,128.0/5},{"c2 di",1,0,512,245,64,0,128.0/5},
 {"l1 fwd",0,1,128,256,3136,0,1},{"l1 dw",1,0,256,3136,128,1,1},{"l1 di",0,0,128,3136,256,0,1},
 {"l2 fwd",0,1,128,32,256,0,1},{"l2 dw",1,0,32,256,128,1,1},{"l2 di",0,0,128,256,32,0,1},
 {"l3 fwd",0,1,128,256,16,0,1},{"l3 dw",1,0,256,16,128,1,1},{"l3 di",0,0,128,16,256,0,1},
 {"l4 fwd",0,1,128,3136,256,0,1},{"l4 dw",1,0,3136,256,128,1,1},{"l4 di",0,0,128,256,3136,0,1},
 {"t1 fwd",1,0,512,245,64,0,128.0/5},{"t1 dw",0,1,64,512,245,1,128.0/5},{"t1 di",0,0,64,245,512,0,128.0/5},
 {"t2 fwd",1,0,16,8036,32,0,128.0/41},{"t2 dw",0,1,32,16,8036,1,128.0/41},{"t2 di",0,0,32,8036,16,0,128.0/41}};
static int cmpd(const void*a,const void*b){double x=*(const double*)a,y=*(const double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int th=argc>1?atoi(argv[1]):1, reps=argc>2?atoi(argv[2]):15, p, r, n=sizeof S/sizeof S[0];
  size_t big=3136*256*2+64; float *A=malloc(big*4),*B=malloc(big*4),*C=malloc(big*4*2);
  float *ws=aligned_alloc(64,((cvi_gemm_workspace_floats(th)*4+63)/64)*64);
  cvi_gemm_env env={CVI_GEMM_PATH_AUTO,th,ws};
  double to=0,tn=0,fl=0;
  for(size_t i=0;i<big;i++){A[i]=(float)((i*7)%13)/13-0.5f;B[i]=(float)((i*5)%11)/11-0.5f;}
  memset(C,0,big*8);
  for(p=0;p<n;p++){
    const struct sh*s=&S[p]; size_t M=s->m,N=s->n_,K=s->k; double ot[64],nt[64];
    int inner = (int)(2e7/(2.0*M*N*K))+1;
    for(r=0;r<reps;r++){ int i; double t0;
      t0=now(); for(i=0;i<inner;i++) old_cvi_gemm(&env,s->ta,s->tb,M,N,K,1,A,s->ta?M:K,B,s->tb?K:N,s->beta,C,N); ot[r]=(now()-t0)/inner;
      t0=now(); for(i=0;i<inner;i++) cvi_gemm(&env,s->ta,s->tb,M,N,K,1,A,s->ta?M:K,B,s->tb?K:N,s->beta,C,N); nt[r]=(now()-t0)/inner; }
    qsort(ot,reps,8,cmpd); qsort(nt,reps,8,cmpd);
    double f=2.0*M*N*K; fl+=f*s->calls; to+=ot[reps/2]*s->calls; tn+=nt[reps/2]*s->calls;
    printf("%-7s %4zux%4zux%4zu old %6.1f new %6.1f GFLOP/s  %+5.1f%%\n",s->n,M,N,K,f/ot[reps/2]/1e9,f/nt[reps/2]/1e9,(ot[reps/2]/nt[reps/2]-1)*100);
  }
  printf("all 24 (%d threads): old %.1f new %.1f GFLOP/s  %+.1f%%\n",th,fl/to/1e9,fl/tn/1e9,(to/tn-1)*100);
  return 0;}
