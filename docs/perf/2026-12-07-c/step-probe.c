/* steps THREADS STEPS: img/s of the seed model at B128 (random binary-ish data). */
#define _POSIX_C_SOURCE 200809L
#include "cvae.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(int argc,char**argv){
  int threads=argc>1?atoi(argv[1]):1, steps=argc>2?atoi(argv[2]):40, B=128, i;
  cvae_model *m; cvae_optimizer *o; size_t np;
  float *x=malloc((size_t)B*784*4); for(i=0;i<B*784;i++) x[i]=(float)((i*2654435761u)>>28)/15.0f;
  cvae_model_create(&m); cvae_model_init_preset(m,1,28,28,16,B,1); cvae_model_set(m,CVAE_MODEL_THREADS,threads);
  cvae_model_params(m,&np); cvae_optimizer_create(&o,CVAE_OPTIMIZER_ADAM,np);
  for(i=0;i<10;i++) cvae_model_train_step(m,o,x,B,NULL,NULL);
  double best=1e9; int r;
  for(r=0;r<5;r++){ double t0=now(); for(i=0;i<steps/5;i++) cvae_model_train_step(m,o,x,B,NULL,NULL); double t=(now()-t0)/(steps/5); if(t<best)best=t; }
  printf("%.0f\n", B/best);
  return 0;}
