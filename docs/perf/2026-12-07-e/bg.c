/* bg: ms per cvi_bias_grad_planes over the seed model's conv outputs at B128 (1 thread), best of 15 */
#define _POSIX_C_SOURCE 200809L
#include "cvae_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(void){
  size_t B=128, i; int r; float db[64]; double best=1e9, chk=0;
  size_t shapes[4][2]={{32,196},{64,49},{32,196},{1,784}};
  float *dy=cvi_alloc_floats(NULL,B*32*196);
  for(i=0;i<B*32*196;i++) dy[i]=(float)((i*2654435761u)>>20)*1e-6f-0.002f;
  for(r=0;r<15;r++){ double t0=now(); int s; for(s=0;s<4;s++){ for(i=0;i<64;i++)db[i]=0; cvi_bias_grad_planes(db,dy,B,shapes[s][0],shapes[s][1],1); chk+=db[0];} double t=now()-t0; if(t<best)best=t;}
  printf("bias grad %.3f ms (chk %g)\n",best*1e3,chk); return 0;}
