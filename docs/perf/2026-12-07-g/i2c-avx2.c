/* i2c-avx2 [14|28]: ms for a batch of 128 images of im2col and col2im on the AVX2 path, 1 thread,
 * best of 15: the middle layers' geometry (14: 32 x 14 x 14 -> 7 x 7, groups of 5 images, as
 * conv2d cuts them) or the 28-pixel rows' (28: 1 x 28 x 28 -> 14 x 14, groups of 8). The same
 * loop as docs/perf/2026-12-07-e/i2c.c, with the geometry chosen here. */
#define _POSIX_C_SOURCE 200809L
#include "cvae_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc, char **argv){
  int wide = argc > 1 && strcmp(argv[1], "28") == 0;
  cvi_conv_geom g14 = {32,14,14,4,4,2,2,1,1,7,7}, g28 = {1,28,28,4,4,2,2,1,1,14,14}, g = wide ? g28 : g14;
  size_t B=128, G=wide?8:5, P=g.OH*g.OW, ckk=g.C*16, image=g.C*g.H*g.W, i, b0; int r;
  float *imgs=cvi_alloc_floats(NULL,B*image+64), *out=cvi_alloc_floats(NULL,B*image+64), *col=cvi_alloc_floats(NULL,ckk*G*P+64);
  float *tab=cvi_alloc_floats(NULL,cvi_conv_tables_floats(&g)); cvi_conv_tables t;
  for(i=0;i<B*image;i++) imgs[i]=(float)(i%17)*0.1f;
  cvi_conv_tables_build(&t,tab,&g,G*P);
  cvi_gemm_env env; env.path=CVI_GEMM_PATH_AVX2; env.threads=1; env.ws=NULL;
  double bi=1e9, bc=1e9;
  for(r=0;r<15;r++){
    double ti=0, tc=0, t0;
    for(b0=0;b0<B;b0+=G){ size_t gn=B-b0<G?B-b0:G;
      t0=now(); cvi_im2col_batch(col,imgs+b0*image,gn,&g,&t,&env); ti+=now()-t0;
      t0=now(); cvi_col2im_batch(out+b0*image,col,gn,&g,&t,NULL,0,&env); tc+=now()-t0; }
    if(ti<bi)bi=ti;
    if(tc<bc)bc=tc; }
  printf("im2col %.3f ms  col2im %.3f ms\n",bi*1e3,bc*1e3); return 0;}
