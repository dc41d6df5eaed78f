/* im2col-probe.c - times cvi_im2col_batch and cvi_col2im_batch on the seed model's
 * geometries at batch 128, one thread, best of 20 (argument 2: 32 channels of 14 x 14
 * to 7 x 7; argument 1: 1 channel of 28 x 28 to 14 x 14). Built against a library's
 * static archive:
 *   cc -O2 -std=c11 -Ilib -Iinclude im2col-probe.c build/libcvae.a -lm -fopenmp */
#define _GNU_SOURCE
#include "cvae_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){
  /* conv2: C=32, 14x14, 4x4 s2 p1 -> 7x7 ; conv1: C=1 28x28 -> 14x14 */
  int which = argc>1?atoi(argv[1]):2;
  cvi_conv_geom g;
  if(which==2){ g.C=32;g.H=14;g.W=14;g.OH=7;g.OW=7;} else {g.C=1;g.H=28;g.W=28;g.OH=14;g.OW=14;}
  g.KH=g.KW=4;g.SH=g.SW=2;g.PH=g.PW=1;
  size_t P=g.OH*g.OW, cols=g.C*16*P, group=cvi_conv_group(cols), n=128;
  size_t image=g.C*g.H*g.W;
  float *tabmem=aligned_alloc(64,cvi_conv_tables_floats(&g)*4+64);
  float *col=aligned_alloc(64,group*cols*4+64);
  float *imgs=aligned_alloc(64,n*image*4);
  for(size_t i=0;i<n*image;i++) imgs[i]=(float)(i%17);
  cvi_conv_tables t; cvi_conv_tables_build(&t,tabmem,&g,group*P);
  double best=1e9,bestc=1e9;
  for(int r=0;r<20;r++){
    double t0=now();
    for(size_t b0=0;b0<n;b0+=group){size_t gn=n-b0<group?n-b0:group; cvi_im2col_batch(col,imgs+b0*image,gn,&g,&t,1);}
    double t1=now();
    for(size_t b0=0;b0<n;b0+=group){size_t gn=n-b0<group?n-b0:group; cvi_col2im_batch(imgs+b0*image,col,gn,&g,&t,1);}
    double t2=now();
    if(t1-t0<best)best=t1-t0; if(t2-t1<bestc)bestc=t2-t1;
  }
  printf("group %zu: im2col %.3f ms (%.2f ns/float), col2im %.3f ms\n",group,best*1e3,best*1e9/(n*cols),bestc*1e3);
  return 0;}
