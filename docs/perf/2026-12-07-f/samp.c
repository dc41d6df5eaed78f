/* samp THREADS REPS: ms per 64-sample call (median of 9 batches of REPS) */
#define _POSIX_C_SOURCE 200809L
#include "cvae.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int th=atoi(argv[1]), reps=argc>2?atoi(argv[2]):200, r, i; cvae_model *m; double t[9];
  float *img=malloc(64*784*4);
  cvae_model_create(&m); cvae_model_init_preset(m,1,28,28,16,128,1); cvae_model_set(m,CVAE_MODEL_THREADS,th);
  for(i=0;i<50;i++) cvae_model_sample(m,64,i,img);
  for(r=0;r<9;r++){double t0=now(); for(i=0;i<reps;i++) cvae_model_sample(m,64,i,img); t[r]=(now()-t0)/reps*1e3;}
  qsort(t,9,sizeof t[0],cmp);
  printf("threads %d: %.3f ms (%.3f-%.3f)\n",th,t[4],t[0],t[8]); return 0;}
