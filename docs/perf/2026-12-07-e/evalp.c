/* evalp THREADS: seconds per cvae_model_evaluate of t10k (best of 5) */
#define _POSIX_C_SOURCE 200809L
#include "cvae.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){
  int th=atoi(argv[1]), r; cvae_dataset *ds; cvae_model *m; double rec,kl,tot,best=1e9;
  cvae_dataset_create(&ds);
  if(cvae_dataset_load_idx(ds,"data/mnist/t10k-images-idx3-ubyte",NULL)!=CVAE_OK){printf("load failed\n");return 1;}
  cvae_model_create(&m); cvae_model_init_preset(m,1,28,28,16,128,1); cvae_model_set(m,CVAE_MODEL_THREADS,th);
  for(r=0;r<5;r++){double t0=now(); cvae_model_evaluate(m,ds,7,&rec,&kl,&tot); double t=now()-t0; if(t<best)best=t;}
  printf("threads %d: %.3f s (%.0f img/s) loss %.3f\n",th,best,10000/best,tot); return 0;}
