#include "sg_synth_fixtures.h"
#include <criterion/criterion.h>
Test(zz, conv) {
    sg_engine_config c = fx_tiny_config();
    sg_engine *e = sg_engine_create(&c, 12);
    fx_engine_perturb(e, 13, 0.15f);
    sg_engine_params(e)[e->off_logtau] = logf(4.0f);
    size_t ssz = 3*c.store*c.store; uint8_t *pix = malloc(ssz*20); sg_rng r; sg_rng_seed(&r, 6);
    int shots[4]={1,3,1,2}; const char *tx[4]={"green bar", "yellow cross on dark", "red ring", "blue disc bright"};
    const uint8_t *sup[4]; uint8_t *q=pix;
    for (int k=0;k<4;k++){ sup[k]=q; for(int i=0;i<shots[k];i++,q+=ssz) fx_draw(&r,k%4,(k*3+1)%4,c.store,q);} 
    int ql[5]; const uint8_t *qry=q; for(int i=0;i<5;i++,q+=ssz){ql[i]=i%4; fx_draw(&r,ql[i]%4,(ql[i]*3+1)%4,c.store,q);} 
    sg_episode ep={4,shots,sup,tx,5,qry,ql};
    const char *mode = getenv("ZZ_MODE") ? getenv("ZZ_MODE") : "";
    float *pp = sg_engine_params(e);
    if (strchr(mode,'P')) for (size_t i=e->off_P;i<e->off_omega;i++) pp[i]=0;
    if (strchr(mode,'G')) for (int s=0;s<c.stages;s++){ for(size_t i=e->off_gg[s];i<e->off_U[s];i++) pp[i]=0; for(size_t i=e->off_A[s];i<e->off_A[s]+c.rank*e->zdim+c.rank;i++) pp[i]=0; }
    if (strchr(mode,'g')) for (int s=0;s<c.stages;s++){ for(size_t i=e->off_gg[s];i<e->off_U[s];i++) pp[i]=0; }
    if (strchr(mode,'a')) for (int s=0;s<c.stages;s++){ for(size_t i=e->off_A[s];i<e->off_A[s]+c.rank*e->zdim+c.rank;i++) pp[i]=0; }
    if (strchr(mode,'1')) for (int s=1;s<c.stages;s++){ for(size_t i=e->off_gg[s];i<e->off_U[s];i++) pp[i]=0; for(size_t i=e->off_A[s];i<e->off_A[s]+c.rank*e->zdim+c.rank;i++) pp[i]=0; }
    if (strchr(mode,'0')) for (int s=0;s<1;s++){ for(size_t i=e->off_gg[s];i<e->off_U[s];i++) pp[i]=0; for(size_t i=e->off_A[s];i<e->off_A[s]+c.rank*e->zdim+c.rank;i++) pp[i]=0; }
    size_t np=sg_engine_n_params(e); float *g=sg_xalloc_floats(np);
    float L=sg_engine_episode_grad(e,&ep,g,1,NULL);
    float *p = sg_engine_params(e);
    for (size_t i=e->off_t2+20; i<e->off_t2+24; i+=1){ float o=p[i]; char line[512]; int n=snprintf(line,sizeof line,"L %.4f param %zu analytic %.6g :", L, i, g[i]);
      for (float h=0.01f; h>1e-3f; h/=3){ p[i]=o+h; double lp=sg_engine_episode_grad(e,&ep,NULL,1,NULL); p[i]=o-h; double lm=sg_engine_episode_grad(e,&ep,NULL,1,NULL); p[i]=o; n+=snprintf(line+n,sizeof line-n," %.6g",(lp-lm)/(2*h)); }
      cr_log_info("%s", line); }
}
