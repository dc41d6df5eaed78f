#define _POSIX_C_SOURCE 200809L
#include <cvae.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t n=1688289,i; int reps=200,r,k; double avg=argc>1?atof(argv[1]):0;
  float *p=malloc(n*4),*g=malloc(n*4); cvae_optimizer *o;
  for(i=0;i<n;i++){p[i]=((float)(i%97)-48.0f)*1e-3f; g[i]=((float)(i%89)-44.0f)*1e-4f;}
  cvae_optimizer_create(&o,CVAE_OPTIMIZER_ADAM,n);
  if(avg>0) cvae_optimizer_set(o,CVAE_OPT_AVERAGE,avg);
  double best=1e9;
  for(k=0;k<5;k++){double t0=now(); for(r=0;r<reps/5;r++) cvae_optimizer_step(o,p,g,n); double dt=(now()-t0)/(reps/5); if(dt<best)best=dt;}
  printf("avg %g: %.3f ms per step (p0 %g)\n",avg,best*1e3,p[0]);
  return 0;
}
