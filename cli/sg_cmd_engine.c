/* sg_cmd_engine.c — the engine commands: `sgps train-engine` (MPI
 * data-parallel meta-training), `sgps synth` (one task → one classifier)
 * and `sgps classify` (a classifier over image files). */
#include "sg_cli.h"
#include "sg_cli_data.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 64

static void init_mpi(int *argc, char ***argv, int *rank, int *size) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
}

static int finish_mpi(int code) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    return code;
}

static const char train_help[] =
    "usage: [mpirun -n P] sgps train-engine --data SET [--data SET ...] --registry FILE -o ENGINE.sgpe [options]\n\n"
    "Meta-trains an engine. Stage 1 pretrains the base CNN on every training class;\n"
    "stage 2 trains the generator on episodes (N-way, K mixed over 0..5, text dropout).\n"
    "Data-parallel over MPI ranks: one Allreduce of the flat gradient per step.\n\n"
    "  --data SET          an image set (repeatable): a folder with labels.csv (columns path,label),\n"
    "                      a folder of class subfolders (DIR/images/<label>/x.jpg or DIR/<label>/x.jpg),\n"
    "                      or labelled shards (an index JSON or a brace pattern, as sgps pack writes\n"
    "                      them). Its classes are SET/LABEL: SET is the folder's name, or the shards'\n"
    "                      stem (ham-index.json, ham-{000000..000009}.tar.zst: ham)\n"
    "  --registry FILE     class descriptions: {\"diseases\": [{\"id\": \"SET/LABEL\", \"description\": ...}]}\n"
    "  -o, --out FILE      engine file to write (atomically)\n"
    "  --val LIST          held-out validation classes: set names or SET/LABEL ids, comma separated;\n"
    "                      used only to pick checkpoints (default: none)\n"
    "  --stage2-classes LIST  classes (set names or SET/LABEL ids) kept out of stage 1 and used\n"
    "                      alone for stage-2 episodes, so the generator learns on classes the\n"
    "                      backbone never saw (default: stage 2 uses the stage-1 classes)\n"
    "  --val-episodes N    validation episodes per shot count at each check (default 60)\n"
    "  --epochs N          stage-1 epochs (default 10)\n"
    "  --batch N           stage-1 global batch (default 128)\n"
    "  --optimizer NAME    stage-1 optimizer: sgd (default; momentum 0.9, chosen over adamw on\n"
    "                      the validation classes of the real data: docs/results.md) or adamw\n"
    "  --lr X              stage-1 learning rate (default 2e-3 with adamw, 0.1 with sgd)\n"
    "  --wd X              stage-1 weight decay: decoupled with adamw, L2 with sgd (default 5e-4)\n"
    "  --bn-group N        stage-1 batch norm over groups of N images drawn from one --data set each,\n"
    "                      classes still balanced; N must divide the batch and the batch per rank;\n"
    "                      0: over each rank's whole, mixed batch (default). 16 raised accuracy on\n"
    "                      modalities held out of training by up to 7 points and lowered it on\n"
    "                      dermoscopy (docs/results.md). The engine records it, and synthesis from\n"
    "                      it leaves the support normalization off by default\n"
    "  --episodes N        stage-2 episodes (default 1000)\n"
    "  --episodes-per-step N  (default 4)\n"
    "  --lr2 X             stage-2 learning rate (default 1e-3)\n"
    "  --width N           channels per stage (default 64, or that of the --init / --init-backbone engine)\n"
    "  --stages N          conv stages, 1..6 (default 4, or that of the --init / --init-backbone engine)\n"
    "  --convs LIST        convolutions per stage, 1..3: one number for every stage or one per stage\n"
    "                      (e.g. 1,2,2,2; default 1, or that of the --init / --init-backbone engine)\n"
    "  --img N             classifier input side (default 40, chosen on validation classes; or that of\n"
    "                      the --init / --init-backbone engine); images are stored at N+N/8\n"
    "  --seed S            seed (default 1)\n"
    "  --checkpoint PREFIX write PREFIX.stage1.sgpe / PREFIX.stage2.sgpe (engines) and PREFIX.state\n"
    "                      (weights + optimizer state, resumable) at every epoch / validation point\n"
    "  --resume            continue from PREFIX.state (needs --checkpoint, the same settings and data\n"
    "                      and as many ranks; starts from the beginning when there is no state yet)\n"
    "  --time-budget SEC   end stage 2 early after SEC seconds\n"
    "  --calib-episodes N  after stage 2, choose the head's cosine/ridge mix, centring, ridge λ and\n"
    "                      logit scale on N validation episodes per shot count (1 and 5); 0: keep the\n"
    "                      head as trained (default 300; needs --val)\n"
    "  --threads N         OpenBLAS threads per rank (default 1)\n"
    "  --init ENGINE       start from this engine's weights (e.g. a stage-1 checkpoint with --epochs 0)\n"
    "  --init-backbone ENGINE  take only the base backbone (stage 1) from ENGINE; fresh generator\n"
    "  --stage2-train LIST stage-2 groups to train: any of gen (FiLM and kernel deltas), text, head\n"
    "                      (temperature, centring, ridge weight and λ); default gen,text,head\n"
    "  --teacher ENGINE    distil stage 1 from this engine's stage-1 classifier (repeatable, up to 4;\n"
    "                      their probabilities are averaged): trained on the same --data sets and\n"
    "                      classes at the same input side, e.g. stage-1 engines of other seeds\n"
    "  --kd-weight W       stage-1 loss (1 - W) x cross-entropy + W x T² KL(teachers || engine),\n"
    "                      0..1 (default 0.5; only with --teacher)\n"
    "  --kd-temp T         distillation temperature (default 4)\n"
    "SIGTERM, SIGUSR1 or a first Ctrl-C (SIGINT): finish the current step, write PREFIX.state and\n"
    "exit with status 3; the same command with --resume continues exactly where it stopped. A\n"
    "second Ctrl-C ends it at once. Under mpirun, Ctrl-C is mpirun's: signal the ranks instead.\n"
    "Exit status: 0 on success, 1 on a training or I/O error, 2 on bad arguments, 3 stopped (resumable).\n";

/* Comma-separated set names or SET/LABEL ids → class indices (an error names
 * the option and the entry that matches nothing). */
static int parse_class_list(const char *spec, const char *opt, const sg_dataset *d, int *out, int *n) {
    *n = 0;
    if (!spec) return 0;
    char *list = sg_xstrdup(spec), *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int hit = 0;
        for (int c = 0; c < d->n_classes; c++)
            if (strcmp(d->class_names[c], tok) == 0 || strcmp(d->domain_names[d->class_domain[c]], tok) == 0) {
                int dup = 0;
                for (int k = 0; k < *n; k++) dup |= out[k] == c;
                if (!dup) out[(*n)++] = c;
                hit = 1;
            }
        if (!hit) {
            sg_log(SG_LOG_ERROR, "%s: '%s' names no loaded set or class", opt, tok);
            free(list);
            return -1;
        }
    }
    free(list);
    return 0;
}

/* " (convolutions per stage 1,2,2,2)" for a deeper net, "" for one each; static buffer. */
static const char *convs_desc(const sg_engine_config *c) {
    static char buf[64];
    char list[32];
    if (!sg_engine_convs_str(c, list, sizeof list)) return "";
    snprintf(buf, sizeof buf, " (convolutions per stage %s)", list);
    return buf;
}

/* "2" or "1,2,2,2" → counts (1..SG_ENGINE_MAX_CONVS); the number of them, 0 when malformed. */
static int parse_convs(const char *v, int *out) {
    int n = 0;
    const char *p = v;
    for (;;) {
        if (*p < '1' || *p > '0' + SG_ENGINE_MAX_CONVS || n == SG_ENGINE_MAX_STAGES) return 0;
        out[n++] = *p++ - '0';
        if (!*p) return n;
        if (*p++ != ',') return 0;
    }
}

/* "gen,text" → the stage-2 groups to train; 0 when a name is not a group or none is given. */
static int parse_stage2_train(const char *v, sg_train_opts *o) {
    int gen = 0, text = 0, head = 0, ok = 1;
    char *list = sg_xstrdup(v), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "gen") == 0) gen = 1;
        else if (strcmp(t, "text") == 0) text = 1;
        else if (strcmp(t, "head") == 0) head = 1;
        else ok = 0;
    }
    free(list);
    if (!ok || !(gen || text || head)) return 0;
    o->train_gen = gen;
    o->train_text = text;
    o->train_head = head;
    return 1;
}

int sg_cmd_train_engine(int argc, char **argv) {
    char *sets[MAX_SETS];
    int n_sets = 0;
    const char *registry = NULL, *out = NULL, *val = NULL, *s2only = NULL, *ckpt = NULL, *init = NULL, *init_bb = NULL;
    sg_train_opts o;
    sg_train_opts_default(&o);
    sg_engine_config cfg;
    sg_engine_config_default(&cfg);
    long threads = 1;
    int img_set = 0, width_set = 0, stages_set = 0, lr_set = 0;
    o.sgd1 = 1; /* the command's default is the real-data recipe's; the library's stays AdamW */
    int convs_arg[SG_ENGINE_MAX_STAGES], n_convs_arg = 0;
    enum { MAX_TEACHERS = 4 };
    const char *teacher_path[MAX_TEACHERS];
    int n_teach = 0, kd_set = 0;
    for (int i = 1; i < argc; i++) {
        int i0 = i;
        const char *v;
        long l;
        double x;
        if (sg_cli_is_help(argv[i])) {
            fputs(train_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--data", &v)) {
            if (n_sets == MAX_SETS) return fprintf(stderr, "sgps train-engine: too many --data\n"), 2;
            sets[n_sets++] = (char *)v;
        } else if (sg_cli_opt(argc, argv, &i, "--registry", &v)) registry = v;
        else if (sg_cli_opt(argc, argv, &i, "--out", &v) || sg_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (sg_cli_opt(argc, argv, &i, "--val", &v)) val = v;
        else if (sg_cli_opt(argc, argv, &i, "--checkpoint", &v)) ckpt = v;
        else if (strcmp(argv[i], "--resume") == 0) o.resume = 1;
        else if (sg_cli_opt(argc, argv, &i, "--calib-episodes", &v) && sg_cli_parse_int(v, 0, 1000000, &l)) o.calib_episodes = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--init-backbone", &v)) init_bb = v;
        else if (sg_cli_opt(argc, argv, &i, "--stage2-train", &v)) {
            if (!parse_stage2_train(v, &o))
                return fprintf(stderr, "sgps train-engine: --stage2-train '%s': give gen, text and/or head, comma separated\n", v), 2;
        }
        else if (sg_cli_opt(argc, argv, &i, "--init", &v)) init = v;
        else if (sg_cli_opt(argc, argv, &i, "--stage2-classes", &v)) s2only = v;
        else if (sg_cli_opt(argc, argv, &i, "--val-episodes", &v) && sg_cli_parse_int(v, 1, 1000000, &l)) o.val_episodes = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--epochs", &v) && sg_cli_parse_int(v, 0, 100000, &l)) o.stage1_epochs = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--batch", &v) && sg_cli_parse_int(v, 1, 1 << 16, &l)) o.batch = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--episodes", &v) && sg_cli_parse_int(v, 0, 1L << 30, &l)) o.stage2_episodes = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--episodes-per-step", &v) && sg_cli_parse_int(v, 1, 1024, &l)) o.episodes_per_step = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--width", &v) && sg_cli_parse_int(v, 1, 512, &l)) cfg.width = (int)l, width_set = 1;
        else if (sg_cli_opt(argc, argv, &i, "--stages", &v) && sg_cli_parse_int(v, 1, 6, &l)) cfg.stages = (int)l, stages_set = 1;
        else if (sg_cli_opt(argc, argv, &i, "--convs", &v) && (n_convs_arg = parse_convs(v, convs_arg)) > 0) {
        } else if (sg_cli_opt(argc, argv, &i, "--img", &v) && sg_cli_parse_int(v, 16, 512, &l)) {
            cfg.img = (int)l;
            cfg.store = cfg.img + cfg.img / 8;
            img_set = 1;
        } else if (sg_cli_opt(argc, argv, &i, "--seed", &v) && sg_cli_parse_int(v, 0, 1L << 40, &l)) o.seed = (uint64_t)l;
        else if (sg_cli_opt(argc, argv, &i, "--threads", &v) && sg_cli_parse_int(v, 1, 256, &l)) threads = l;
        else if (sg_cli_opt(argc, argv, &i, "--lr", &v) && sg_cli_parse_float(v, &x) && x > 0) o.lr1 = (float)x, lr_set = 1;
        else if (sg_cli_opt(argc, argv, &i, "--optimizer", &v) && (!strcmp(v, "sgd") || !strcmp(v, "adamw")))
            o.sgd1 = !strcmp(v, "sgd");
        else if (sg_cli_opt(argc, argv, &i, "--bn-group", &v) && sg_cli_parse_int(v, 0, 1 << 16, &l)) o.bn_group = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--wd", &v) && sg_cli_parse_float(v, &x) && x >= 0 && x < 10) o.wd1 = (float)x;
        else if (sg_cli_opt(argc, argv, &i, "--lr2", &v) && sg_cli_parse_float(v, &x) && x > 0) o.lr2 = (float)x;
        else if (sg_cli_opt(argc, argv, &i, "--time-budget", &v) && sg_cli_parse_float(v, &x) && x >= 0) o.time_budget_s = x;
        else if (sg_cli_opt(argc, argv, &i, "--teacher", &v)) {
            if (n_teach == MAX_TEACHERS) return fprintf(stderr, "sgps train-engine: at most %d --teacher\n", MAX_TEACHERS), 2;
            teacher_path[n_teach++] = v;
        } else if (sg_cli_opt(argc, argv, &i, "--kd-weight", &v) && sg_cli_parse_float(v, &x) && x >= 0 && x <= 1)
            o.kd_weight = (float)x, kd_set = 1;
        else if (sg_cli_opt(argc, argv, &i, "--kd-temp", &v) && sg_cli_parse_float(v, &x) && x > 0 && x <= 100)
            o.kd_temp = (float)x, kd_set = 1;
        else {
            return sg_cli_bad_arg("train-engine", argv, i0, i);
        }
    }
    if (!n_sets || !registry || !out) {
        fprintf(stderr, "sgps train-engine: --data, --registry and -o are required (see --help)\n");
        return 2;
    }
    if (o.sgd1 && !lr_set) o.lr1 = 0.1f;
    if (kd_set && !n_teach) return fprintf(stderr, "sgps train-engine: --kd-weight and --kd-temp need --teacher\n"), 2;
    int rank, size;
    init_mpi(&argc, &argv, &rank, &size);
    if (o.stage1_epochs > 0 && !sg_train_bn_group_fits(o.batch, o.bn_group, size)) {
        if (rank == 0)
            fprintf(stderr, "sgps train-engine: --bn-group %d must divide the batch (%d) and the batch per rank (%d on %d rank(s))\n",
                    o.bn_group, o.batch, (o.batch + size - 1) / size, size);
        return finish_mpi(2);
    }
    sg_log_set_rank(size > 1 ? rank : -1);
    if (rank != 0) sg_log_set_level(SG_LOG_WARN);
    openblas_set_num_threads((int)threads);
    sg_err err;
    /* the engine and the state are written after hours of work: their folders are checked first */
    {
        int bad = 0;
        if (rank == 0) {
            char state[4200];
            if (ckpt) snprintf(state, sizeof state, "%s.state", ckpt);
            bad = sg_cli_check_writable(out, &err) || (ckpt && sg_cli_check_writable(state, &err));
            if (bad) sg_log(SG_LOG_ERROR, "%s", err.msg);
        }
        if (size > 1) MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (bad) return finish_mpi(1);
    }
    /* An engine to start from (loaded once; --init-backbone's only read here)
     * sets the input side, width and stages unless they are given. */
    sg_engine *e = NULL;
    if (init && sg_engine_load(init, &e, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "--init: %s", err.msg);
        return finish_mpi(1);
    }
    if ((init || init_bb) && (!img_set || !width_set || !stages_set || !n_convs_arg)) {
        /* --init-backbone also takes a version-1 engine: only its header is read here */
        sg_engine_config bc;
        if (e) bc = *sg_engine_get_config(e);
        else if (sg_engine_read_backbone_config(init_bb, &bc, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "--init-backbone: %s", err.msg);
            return finish_mpi(1);
        }
        const sg_engine_config *pc = &bc;
        if (!img_set) cfg.img = pc->img, cfg.store = pc->store;
        if (!width_set) cfg.width = pc->width;
        if (!stages_set) cfg.stages = pc->stages;
        if (!n_convs_arg && cfg.stages == pc->stages) memcpy(cfg.convs, pc->convs, sizeof cfg.convs);
    }
    if (n_convs_arg) {
        if (n_convs_arg != 1 && n_convs_arg != cfg.stages) {
            fprintf(stderr, "sgps train-engine: --convs gives %d counts for %d stages (give one, or one per stage)\n",
                    n_convs_arg, cfg.stages);
            sg_engine_free(e);
            return finish_mpi(2);
        }
        for (int s = 0; s < cfg.stages; s++) cfg.convs[s] = convs_arg[n_convs_arg == 1 ? 0 : s];
    }
    if ((cfg.img >> cfg.stages) < 1) {
        sg_log(SG_LOG_ERROR, "--img %d is too small for %d stages (each halves the map)", cfg.img, cfg.stages);
        sg_engine_free(e);
        return finish_mpi(2);
    }
    sg_registry_texts rt;
    if (sg_registry_load_texts(registry, &rt, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        sg_engine_free(e);
        return finish_mpi(1);
    }
    sg_dataset d;
    if (sg_cli_load_sets(sets, n_sets, cfg.store, &rt, &d, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        sg_registry_texts_free(&rt);
        sg_engine_free(e);
        return finish_mpi(1);
    }
    int no_text = 0;
    for (int c = 0; c < d.n_classes; c++)
        if (!d.class_text[c]) {
            no_text++;
            if (rank == 0) sg_log(SG_LOG_WARN, "class %s has no description in %s", d.class_names[c], registry);
        }
    sg_engine *teachers[MAX_TEACHERS] = {0};
    int *valc = sg_xmalloc(sizeof(int) * (size_t)d.n_classes), nval = 0;
    int *s2c = sg_xmalloc(sizeof(int) * (size_t)d.n_classes), ns2 = 0;
    int code = 0;
    if (parse_class_list(val, "--val", &d, valc, &nval) != 0 || parse_class_list(s2only, "--stage2-classes", &d, s2c, &ns2) != 0) {
        code = 2;
        goto done;
    }
    for (int i = 0; i < ns2; i++)
        for (int k = 0; k < nval; k++)
            if (s2c[i] == valc[k]) {
                sg_log(SG_LOG_ERROR, "--stage2-classes: %s is also a --val class", d.class_names[s2c[i]]);
                code = 2;
                goto done;
            }
    o.val_classes = valc;
    o.n_val_classes = nval;
    o.s2_classes = s2c;
    o.n_s2_classes = ns2;
    o.checkpoint = ckpt;
    if (o.resume && !ckpt) {
        if (rank == 0) sg_log(SG_LOG_ERROR, "--resume needs --checkpoint PREFIX (the state is PREFIX.state)");
        code = 2;
        goto done;
    }
    cfg.n_base_classes = d.n_classes;
    if (init) {
        const sg_engine_config *ec = sg_engine_get_config(e);
        if (ec->n_base_classes != d.n_classes || ec->store != cfg.store) {
            sg_log(SG_LOG_ERROR, "--init: %s was trained on %d classes at %d px; the data has %d classes at %d px", init,
                   ec->n_base_classes, ec->store, d.n_classes, cfg.store);
            code = 1;
            goto done;
        }
        cfg = *ec;
    } else {
        e = sg_engine_create(&cfg, o.seed);
        float mean[3], std[3];
        sg_dataset_stats(&d, mean, std);
        sg_engine_set_normalization(e, mean, std);
        if (init_bb && sg_engine_load_backbone(e, init_bb, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "--init-backbone: %s", err.msg);
            code = 1;
            goto done;
        }
    }
    for (int t = 0; t < n_teach; t++) {
        if (sg_engine_load(teacher_path[t], &teachers[t], &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "--teacher: %s", err.msg);
            code = 1;
            goto done;
        }
        if (sg_train_teacher_fits(e, teachers[t], d.n_classes, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "--teacher %s %s", teacher_path[t], err.msg);
            code = 2;
            goto done;
        }
    }
    o.teachers = (const sg_engine *const *)teachers;
    o.n_teachers = n_teach;
    if (rank == 0)
        sg_log(SG_LOG_INFO, "engine: Conv%d-%d at %dpx%s, %zu parameters; %d images, %d classes (%d held out for validation), %d without text",
               cfg.stages, cfg.width, cfg.img, convs_desc(&cfg), sg_engine_n_params(e), d.n, d.n_classes, nval, no_text);
    double t0 = sg_now();
    sg_train_install_signals();
    sg_status s = sg_engine_train(e, &d, &o, MPI_COMM_WORLD, &err);
    if (s == SG_ERR_INTERRUPTED) {
        if (rank == 0) sg_log(SG_LOG_INFO, "%s", err.msg);
        code = 3;
    } else if (s != SG_OK) {
        sg_log(SG_LOG_ERROR, "training failed: %s", err.msg);
        code = 1;
    } else if (rank == 0) {
        if (sg_engine_save(e, out, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s", err.msg);
            code = 1;
        } else {
            sg_log(SG_LOG_INFO, "wrote %s (%zu parameters, %.1f MB) after %.0f s", out, sg_engine_n_params(e),
                   sg_engine_n_params(e) * 4.0 / 1e6, sg_now() - t0);
        }
    }
done:
    sg_engine_free(e);
    for (int t = 0; t < n_teach; t++) sg_engine_free(teachers[t]);
    sg_dataset_free(&d);
    sg_registry_texts_free(&rt);
    free(valc);
    free(s2c);
    return finish_mpi(code);
}

/* ---- synth ---- */

static const char synth_help[] =
    "usage: sgps synth --engine ENGINE.sgpe --task TASK.json -o OUT.sgpm [--no-text] [--no-images] [--no-adapt]\n"
    "                  [--support-norm B] [--no-check | --check MODE]\n\n"
    "Synthesizes a standalone classifier for one task, with no training. TASK.json:\n"
    "  {\"id\": \"...\", \"classes\": [{\"name\": \"...\", \"description\": \"...\",\n"
    "                               \"images\": [\"path.jpg\", \"shard.tar.zst#KEY\", ...]}, ...]}\n"
    "An image is a file, or SHARD#KEY: the image of the sample with WebDataset key KEY\n"
    "in a tar / tar.zst / tar.gz shard. Relative paths are resolved against the task\n"
    "file's folder. A class needs images (0-5 is the intended range) or a description,\n"
    "or both.\n\n"
    "  --no-text    ignore descriptions     --no-images  text-only synthesis\n"
    "  --no-adapt   base kernels, no generated deltas or FiLM (ablation)\n"
    "  --support-norm B  every norm of the classifier takes B x the support images' own\n"
    "               statistics + (1 - B) x the engine's, 0..1; 0: the engine's alone.\n"
    "               Default 0.25, or 0 for an engine made by adapt-engine or trained with\n"
    "               train-engine --bn-group (docs/engine.md)\n"
    "  --no-check   skip the support check. By default each support image of a class\n"
    "               with two or more is classified by the classifier synthesized without\n"
    "               it (one more synthesis per image); the result is printed, with every\n"
    "               image classified as another class, and kept in the classifier's\n"
    "               metadata (docs/engine.md)\n"
    "  --check MODE how the support check leaves an image out: exact (the classifier is\n"
    "               synthesized again without it: cost quadratic in the task's size), fast\n"
    "               (the task's backbone and normalization kept, only the head rebuilt\n"
    "               without it: about one synthesis in all), auto (the default: exact up\n"
    "               to %d support images, fast above)\n"
    "Exit status: 0 written; 1 a file could not be read or written; 2 bad arguments or task.\n";

/* A support image named SHARD#KEY, waiting for its shard to be read. */
typedef struct shard_ref {
    char shard[4096], key[1024];
    uint8_t *out;
    int ci, kk; /* its place in the task file */
} shard_ref;

/* Whether path names a shard member (SHARD#KEY, and no file of that exact
 * name): fills r->shard and r->key. -1 when the # leaves an empty part. */
static int shard_spec(const char *path, shard_ref *r) {
    const char *hash = strrchr(path, '#');
    if (!hash || access(path, F_OK) == 0) return 0; /* a plain file, a#b.png included */
    if (!hash[1] || hash == path || (size_t)(hash - path) >= sizeof r->shard || strlen(hash + 1) >= sizeof r->key)
        return -1;
    snprintf(r->shard, sizeof r->shard, "%.*s", (int)(hash - path), path);
    snprintf(r->key, sizeof r->key, "%s", hash + 1);
    return 1;
}

/* Reads each shard once, in order of first mention, and decodes the image
 * members of the n refs that name it. On failure *bad is the ref to report. */
static sg_status load_shard_refs(shard_ref *refs, int n, int side, int *bad, sg_err *err) {
    int *done = sg_xcalloc((size_t)n + 1, sizeof *done);
    sg_status s = SG_OK;
    for (int i = 0; i < n && s == SG_OK; i++) {
        if (done[i]) continue;
        const char *shard = refs[i].shard;
        int want = 0;
        for (int j = i; j < n; j++) want += !done[j] && strcmp(refs[j].shard, shard) == 0;
        sg_shard_reader_opts o;
        sg_shard_reader_opts_default(&o);
        o.log_skips = 0;
        sg_shard_reader *r = sg_shard_reader_open(shard, &o, err);
        if (!r) {
            *bad = i;
            s = SG_ERR_IO;
            break;
        }
        sg_sample *smp = NULL;
        while (want > 0 && s == SG_OK && (s = sg_shard_reader_next(r, &smp)) == SG_OK && smp)
            for (int j = i; j < n && s == SG_OK; j++) {
                if (done[j] || strcmp(refs[j].shard, shard) != 0 || strcmp(refs[j].key, smp->key) != 0) continue;
                char name[4200];
                snprintf(name, sizeof name, "%s#%s", shard, refs[j].key);
                s = sg_image_decode_u8_planar(smp->image, smp->image_len, name, side, refs[j].out, err);
                if (s != SG_OK) *bad = j;
                done[j] = 1;
                want--;
            }
        if (s == SG_OK && want > 0) { /* the shard ended (or broke) before every key was found */
            int j = i;
            while (done[j] || strcmp(refs[j].shard, shard) != 0) j++;
            *bad = j;
            sg_err why = {{0}};
            if (sg_shard_reader_status(r, &why) != SG_OK)
                s = sg_err_set(err, SG_ERR_FORMAT, "%s: no sample with key '%s' before the shard ended early: %s",
                               shard, refs[j].key, why.msg);
            else
                s = sg_err_set(err, SG_ERR_ARG, "%s: no sample with key '%s' (with an image)", shard, refs[j].key);
        } else if (s != SG_OK && *bad < 0) {
            *bad = i;
            if (sg_shard_reader_status(r, err) == SG_OK) sg_err_set(err, s, "%s: cannot be read", shard);
        }
        sg_shard_reader_free(r);
    }
    free(done);
    return s;
}

/* The support check as `sgps synth` prints it: the count, then each image
 * the others classified as another class, by its place and name in the task. */
static void print_support_check(const sg_support_check *c, const sg_task *task, const sg_task_spec *ts) {
    if (!c->checked) {
        printf("support check: not run (it needs a class with at least two support images)\n");
        return;
    }
    double acc = (double)c->correct / c->checked, chance = 1.0 / task->n_classes;
    printf("support check: %d of %d support images classified as their own class by the classifier %s without them "
           "(%.0f %%; chance %.0f %%; mean probability of their own class %.2f)\n", c->correct, c->checked,
           c->fast ? "whose head was rebuilt (fast check)" : "synthesized", 100 * acc, 100 * chance, c->mean_p_own);
    for (int ci = 0, first = 0; ci < task->n_classes; first += task->classes[ci].n_shots, ci++)
        for (int i = 0; i < task->classes[ci].n_shots; i++) {
            int p = c->pred[first + i];
            if (p >= 0 && p != ci)
                printf("  $.classes[%d].images[%d] (%s) of '%s' looks like '%s' (probability of '%s' %.2f)\n", ci, i,
                       ts->images[ci][i], task->classes[ci].name, task->classes[p].name, task->classes[ci].name,
                       (double)c->p_own[first + i]);
        }
    if (sg_support_check_failed(c->correct, c->checked, task->n_classes))
        printf("warning: the support images do not tell their classes apart better than chance; check them (a "
               "mislabelled or atypical image) before using this classifier\n");
}

int sg_cmd_synth(int argc, char **argv) {
    const char *engine = NULL, *taskp = NULL, *out = NULL;
    sg_synth_opts so;
    sg_synth_opts_default(&so);
    int check = 1, method = SG_CHECK_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *v;
        double x;
        int i0 = i;
        if (sg_cli_is_help(argv[i])) {
            printf(synth_help, SG_SUPPORT_CHECK_EXACT_MAX);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--engine", &v)) engine = v;
        else if (sg_cli_opt(argc, argv, &i, "--task", &v)) taskp = v;
        else if (sg_cli_opt(argc, argv, &i, "--out", &v) || sg_cli_opt(argc, argv, &i, "-o", &v)) out = v;
        else if (strcmp(argv[i], "--no-text") == 0) so.use_text = 0;
        else if (strcmp(argv[i], "--no-images") == 0) so.use_images = 0;
        else if (strcmp(argv[i], "--no-adapt") == 0) so.adapt = 0;
        else if (strcmp(argv[i], "--no-check") == 0) check = 0;
        else if (sg_cli_opt(argc, argv, &i, "--check", &v) && sg_support_check_method(v) > 0)
            method = sg_support_check_method(v);
        else if (sg_cli_opt(argc, argv, &i, "--support-norm", &v) && sg_cli_parse_float(v, &x) && x >= 0 && x <= 1)
            so.support_norm = (float)x;
        else return sg_cli_bad_arg("synth", argv, i0, i);
    }
    if (!engine || !taskp || !out) return fprintf(stderr, "sgps synth: --engine, --task and -o are required\n"), 2;
    sg_err err;
    sg_engine *e;
    if (sg_engine_load(engine, &e, &err) != SG_OK) return fprintf(stderr, "sgps synth: %s\n", err.msg), 1;
    int code = 2;
    uint8_t *data = NULL;
    size_t len;
    sg_task_spec ts = {0};
    shard_ref *refs = NULL;
    int n_refs = 0;
    sg_task_class *cls = NULL;
    uint8_t **imgs = NULL;
    int n = 0;
    if (sg_file_read_all(taskp, &data, &len, 64 << 20, &err) != SG_OK) {
        fprintf(stderr, "sgps synth: %s\n", err.msg);
        code = 1;
        goto done;
    }
    if (sg_task_spec_parse((const char *)data, len, taskp, &ts, &err) != SG_OK) {
        fprintf(stderr, "sgps synth: %s\n", err.msg);
        goto done;
    }
    n = ts.n;
    int total = 0;
    for (int ci = 0; ci < n; ci++) total += ts.n_images[ci];
    refs = sg_xcalloc((size_t)total + 1, sizeof *refs);
    cls = sg_xcalloc((size_t)n + 1, sizeof *cls);
    imgs = sg_xcalloc((size_t)n + 1, sizeof *imgs);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", taskp);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    int S = sg_engine_get_config(e)->store;
    size_t ssz = (size_t)3 * S * S;
    for (int ci = 0; ci < n; ci++) {
        int k = ts.n_images[ci];
        imgs[ci] = sg_xmalloc(ssz * (size_t)(k ? k : 1));
        for (int kk = 0; kk < k; kk++) {
            const char *spec = ts.images[ci][kk];
            char path[8192];
            if (spec[0] == '/') snprintf(path, sizeof path, "%s", spec);
            else snprintf(path, sizeof path, "%s%s", dir, spec);
            shard_ref *ref = &refs[n_refs];
            int sh = shard_spec(path, ref);
            if (sh < 0) {
                fprintf(stderr, "sgps synth: %s: $.classes[%d].images[%d]: %s: expected SHARD#KEY\n", taskp, ci, kk, path);
                goto done;
            }
            if (sh) { /* read below, each shard once */
                ref->out = imgs[ci] + (size_t)kk * ssz;
                ref->ci = ci;
                ref->kk = kk;
                n_refs++;
            } else if (sg_image_load_u8_planar(path, S, imgs[ci] + (size_t)kk * ssz, &err) != SG_OK) {
                fprintf(stderr, "sgps synth: %s: $.classes[%d].images[%d]: %s\n", taskp, ci, kk, err.msg);
                code = 1;
                goto done;
            }
        }
        cls[ci].name = ts.names[ci];
        cls[ci].text = ts.texts[ci];
        cls[ci].n_shots = k;
        cls[ci].images = imgs[ci];
    }
    int bad = -1;
    if (n_refs && load_shard_refs(refs, n_refs, S, &bad, &err) != SG_OK) {
        fprintf(stderr, "sgps synth: %s: $.classes[%d].images[%d]: %s\n", taskp, refs[bad].ci, refs[bad].kk, err.msg);
        code = 1;
        goto done;
    }
    sg_task task = {n, cls};
    sg_classifier *out_c;
    if (sg_engine_synthesize(e, &task, &so, &out_c, &err) != SG_OK) {
        fprintf(stderr, "sgps synth: %s: %s\n", taskp, err.msg);
        goto done;
    }
    sg_support_check chk = {0};
    if (check && so.use_images) {
        if (sg_engine_support_check(e, &task, &so, sg_support_check_exact_max(method), &chk, &err) != SG_OK) {
            fprintf(stderr, "sgps synth: %s: support check: %s\n", taskp, err.msg);
            sg_classifier_free(out_c);
            goto done;
        }
        char *js = sg_support_check_json(&chk, &task);
        sg_buf meta = {0};
        sg_buf_printf(&meta, "{\"support_check\": %s}", js);
        sg_buf_append(&meta, "", 1);
        out_c->meta_json = (char *)meta.data;
        free(js);
    }
    if (sg_classifier_save(out_c, out, &err) != SG_OK) {
        fprintf(stderr, "sgps synth: %s\n", err.msg);
        code = 1;
    } else {
        printf("wrote %s: %d classes, %zu parameters, written by the engine with no training (support normalization "
               "%g)\n", out, n, out_c->arch.n_params, (double)sg_synth_support_norm(e, &so, total));
        if (check && so.use_images) print_support_check(&chk, &task, &ts);
        code = 0;
    }
    sg_support_check_free(&chk);
    sg_classifier_free(out_c);
done:
    for (int i = 0; i < n && imgs; i++) free(imgs[i]);
    free(imgs);
    free(cls);
    free(refs);
    sg_task_spec_free(&ts);
    free(data);
    sg_engine_free(e);
    return code;
}

/* ---- classify ---- */

static const char classify_help[] =
    "usage: sgps classify --model CLASSIFIER.sgpm [--] IMAGE [IMAGE ...]\n\n"
    "Prints, per image, the predicted class and every class probability (CSV:\n"
    "path,predicted,p_<class>...; a field holding a comma or a quote is quoted, control\n"
    "characters become '?', as in the run folder's CSV files). An unreadable image is\n"
    "reported on stderr and skipped. Images named after -- may begin with '-'. A classifier\n"
    "whose exemplars failed the support check at synthesis (no better than chance; kept\n"
    "in its metadata) is named with a warning on stderr.\n"
    "Exit status: 0 all classified; 1 some image or the model failed; 2 bad arguments.\n";

/* Writes the CSV row in b to stdout and empties b. */
static void put_row(sg_buf *b) {
    sg_buf_append(b, "\n", 1);
    fwrite(b->data, 1, b->len, stdout);
    b->len = 0;
}

/* A classifier whose exemplars did not pass the support check at synthesis
 * (at or below chance; its metadata keeps the check) is named on stderr. */
static void warn_support_check(const char *path, const sg_classifier *c) {
    cJSON *meta = c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(meta, "support_check");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(sc, "checked"), *k = cJSON_GetObjectItemCaseSensitive(sc, "correct");
    if (cJSON_IsNumber(n) && cJSON_IsNumber(k) && sg_support_check_failed(k->valueint, n->valueint, c->n_classes))
        fprintf(stderr, "sgps classify: warning: %s: only %d of %d exemplars were classified as their own class by the "
                        "classifier synthesized without them (support check at synthesis): its predictions may be "
                        "unreliable\n", path, k->valueint, n->valueint);
    cJSON_Delete(meta);
}

int sg_cmd_classify(int argc, char **argv) {
    const char *model = NULL;
    /* options anywhere, as the other commands take them; after "--" every argument is an image */
    char **imgs = sg_xcalloc((size_t)argc + 1, sizeof *imgs);
    int n_imgs = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (opts_done) imgs[n_imgs++] = argv[i];
        else if (strcmp(argv[i], "--") == 0) opts_done = 1;
        else if (sg_cli_is_help(argv[i])) {
            fputs(classify_help, stdout);
            free(imgs);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--model", &v)) model = v;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "sgps classify: unknown option '%s' (an image named so goes after --)\n", argv[i]);
            free(imgs);
            return 2;
        } else imgs[n_imgs++] = argv[i];
    }
    if (!model || !n_imgs) {
        fprintf(stderr, "sgps classify: --model and at least one image are required\n");
        free(imgs);
        return 2;
    }
    sg_err err;
    sg_classifier *c;
    if (sg_classifier_load(model, &c, &err) != SG_OK) {
        fprintf(stderr, "sgps classify: %s\n", err.msg);
        free(imgs);
        return 1;
    }
    warn_support_check(model, c);
    const sg_arch *a = &c->arch;
    sg_ctx *ctx = sg_ctx_create(a, 1);
    float *x = sg_xalloc_floats((size_t)a->in_c * a->in_h * a->in_w), *p = sg_xalloc_floats((size_t)c->n_classes);
    int bad = 0;
    /* one row at a time; names and paths go through the pipeline's CSV quoting */
    sg_buf row = {0};
    sg_buf_append(&row, "path,predicted", 14);
    for (int k = 0; k < c->n_classes; k++) {
        char name[1100];
        snprintf(name, sizeof name, "p_%.1024s", c->class_names[k]);
        sg_buf_append(&row, ",", 1);
        sg_buf_csv_field(&row, name);
    }
    put_row(&row);
    for (int i = 0; i < n_imgs; i++) {
        sg_image im;
        sg_image_limits lim = sg_image_limits_default();
        if (sg_image_load_file(imgs[i], &lim, &im, &err) != SG_OK) {
            fprintf(stderr, "sgps classify: %s; skipped\n", err.msg);
            bad = 1;
            continue;
        }
        sg_image_to_tensor(&im, a->in_h, a->in_w, c->mean, c->std, x);
        sg_image_free(&im);
        const float *out = sg_net_forward(a, ctx, c->params, c->state, x, 1, 0);
        sg_softmax(1, c->n_classes, out, p);
        int best = 0;
        for (int k = 1; k < c->n_classes; k++)
            if (p[k] > p[best]) best = k;
        sg_buf_csv_field(&row, imgs[i]);
        sg_buf_append(&row, ",", 1);
        sg_buf_csv_field(&row, c->class_names[best]);
        for (int k = 0; k < c->n_classes; k++) {
            char v[32];
            sg_buf_append(&row, v, (size_t)snprintf(v, sizeof v, ",%.5f", p[k]));
        }
        put_row(&row);
    }
    sg_buf_free(&row);
    sg_ctx_free(ctx);
    free(x);
    free(p);
    free(imgs);
    sg_classifier_free(c);
    return bad;
}

/* ---- eval-fewshot ---- */

static const char eval_help[] =
    "usage: [mpirun -n P] sgps eval-fewshot --engine E.sgpe --data SET [--registry FILE] [options]\n\n"
    "N-way K-shot episodes on the classes of SET (an image set as train-engine --data reads\n"
    "it: a folder with labels.csv, a folder of class subfolders, or labelled shards), the\n"
    "same seeded episodes for every method: SGPS (images; images + text; text only),\n"
    "ProtoNet on the engine's base backbone, a linear probe, fine-tuning, chance.\n"
    "Prints mean accuracy +- 1.96 sd/sqrt(episodes) and writes OUT.json and OUT.md; when\n"
    "SGPS (images) runs, also SGPS minus each other method paired over the same episodes\n"
    "(mean and 95 % CI of the per-episode difference: the test of whether SGPS is ahead).\n\n"
    "  --way N          classes per episode (default 5)\n"
    "  --shot LIST      shots, comma separated (default 1,5)\n"
    "  --episodes N     (default 600)     --queries N   per class (default 15)\n"
    "  --seed S         episode seed (default 1)\n"
    "  --registry FILE  class descriptions (ids SET/LABEL); without it no text methods run\n"
    "  --methods LIST   subset of sgps,sgps-text,text,noadapt,protonet,linprobe,finetune,chance (default all)\n"
    "  --support-norm B synthesize with sgps synth --support-norm B (default as synth: 0.25,\n"
    "                   0 for an adapted engine or one trained with --bn-group; the noadapt\n"
    "                   ablation never uses it)\n"
    "  --out PREFIX     write PREFIX.json and PREFIX.md (default: print only)\n"
    "Exit status: 0 done; 1 a file could not be read or written; 2 bad arguments.\n";

int sg_cmd_eval_fewshot(int argc, char **argv) {
    const char *engine = NULL, *data = NULL, *registry = NULL, *out = NULL, *shots = "1,5", *methods = NULL;
    sg_fewshot_opts fo;
    sg_fewshot_opts_default(&fo);
    for (int i = 1; i < argc; i++) {
        int i0 = i;
        const char *v;
        long l;
        double x;
        if (sg_cli_is_help(argv[i])) {
            fputs(eval_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--engine", &v)) engine = v;
        else if (sg_cli_opt(argc, argv, &i, "--data", &v)) data = v;
        else if (sg_cli_opt(argc, argv, &i, "--registry", &v)) registry = v;
        else if (sg_cli_opt(argc, argv, &i, "--out", &v)) out = v;
        else if (sg_cli_opt(argc, argv, &i, "--shot", &v)) shots = v;
        else if (sg_cli_opt(argc, argv, &i, "--methods", &v)) methods = v;
        else if (sg_cli_opt(argc, argv, &i, "--way", &v) && sg_cli_parse_int(v, 2, 64, &l)) fo.way = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--episodes", &v) && sg_cli_parse_int(v, 1, 1000000, &l)) fo.episodes = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--queries", &v) && sg_cli_parse_int(v, 1, 10000, &l)) fo.queries = (int)l;
        else if (sg_cli_opt(argc, argv, &i, "--seed", &v) && sg_cli_parse_int(v, 0, 1L << 40, &l)) fo.seed = (uint64_t)l;
        else if (sg_cli_opt(argc, argv, &i, "--support-norm", &v) && sg_cli_parse_float(v, &x) && x >= 0 && x <= 1)
            fo.support_norm = (float)x;
        else return sg_cli_bad_arg("eval-fewshot", argv, i0, i);
    }
    if (!engine || !data) return fprintf(stderr, "sgps eval-fewshot: --engine and --data are required\n"), 2;
    static const char *mnames[SG_M__COUNT] = {"sgps", "sgps-text", "text", "noadapt", "protonet", "linprobe", "finetune", "chance"};
    for (int m = 0; m < SG_M__COUNT; m++) fo.methods[m] = methods == NULL;
    if (methods) {
        char *list = sg_xstrdup(methods), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int hit = 0;
            for (int m = 0; m < SG_M__COUNT; m++)
                if (strcmp(t, mnames[m]) == 0) fo.methods[m] = hit = 1;
            if (!hit) {
                fprintf(stderr, "sgps eval-fewshot: unknown method '%s' (methods: sgps, sgps-text, text, noadapt, protonet, "
                                "linprobe, finetune, chance)\n", t);
                free(list);
                return 2;
            }
        }
        free(list);
    }
    int shot_list[16], n_shot = 0;
    {
        char *list = sg_xstrdup(shots), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            long l;
            if (!sg_cli_parse_int(t, 1, 1000, &l) || n_shot == 16) {
                fprintf(stderr, "sgps eval-fewshot: bad --shot '%s'%s\n", t, n_shot == 16 ? " (at most 16 shot counts)" : "");
                free(list);
                return 2;
            }
            shot_list[n_shot++] = (int)l;
        }
        free(list);
    }
    if (!n_shot) return fprintf(stderr, "sgps eval-fewshot: --shot '%s' names no shot count\n", shots), 2;
    int rank, size;
    init_mpi(&argc, &argv, &rank, &size);
    sg_log_set_rank(size > 1 ? rank : -1);
    if (rank != 0) sg_log_set_level(SG_LOG_WARN);
    openblas_set_num_threads(1);
    sg_err err;
    sg_engine *e;
    if (sg_engine_load(engine, &e, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        return finish_mpi(1);
    }
    sg_registry_texts rt = {0};
    if (registry && sg_registry_load_texts(registry, &rt, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        sg_engine_free(e);
        return finish_mpi(1);
    }
    sg_dataset d;
    char *dirs[1] = {(char *)data};
    if (sg_cli_load_sets(dirs, 1, sg_engine_get_config(e)->store, &rt, &d, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        sg_registry_texts_free(&rt);
        sg_engine_free(e);
        return finish_mpi(1);
    }
    sg_buf md = {0}, js = {0};
    sg_buf_printf(&md, "| method |");
    for (int s = 0; s < n_shot; s++) sg_buf_printf(&md, " %d-way %d-shot |", fo.way, shot_list[s]);
    sg_buf_printf(&md, "\n| --- |");
    for (int s = 0; s < n_shot; s++) sg_buf_printf(&md, " --- |");
    sg_buf_printf(&md, "\n");
    sg_fewshot_result res[16];
    int code = 0;
    for (int s = 0; s < n_shot && !code; s++) {
        fo.shot = shot_list[s];
        if (sg_fewshot_eval(e, &d, &fo, &res[s], MPI_COMM_WORLD, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s: %s", data, err.msg);
            code = 1;
        } else if (rank == 0) {
            sg_log(SG_LOG_INFO, "%d-way %d-shot, %d episodes, %.0f s (SGPS with support normalization %g):", fo.way,
                   fo.shot, fo.episodes, res[s].seconds, (double)sg_engine_support_norm(e, fo.support_norm));
            for (int m = 0; m < SG_M__COUNT; m++)
                if (res[s].ran[m])
                    sg_log(SG_LOG_INFO, "  %-34s %6.2f +- %.2f %%", sg_method_name((sg_method)m), 100 * res[s].mean[m],
                           100 * res[s].ci95[m]);
            for (int m = 0; m < SG_M__COUNT; m++)
                if (res[s].has_diff[m])
                    sg_log(SG_LOG_INFO, "  SGPS (images) - %-18s %+6.2f +- %.2f points (paired)", mnames[m],
                           100 * res[s].diff[m], 100 * res[s].diff_ci95[m]);
        }
    }
    if (rank == 0 && !code) {
        sg_buf_printf(&js, "{\n  \"engine\": ");
        sg_buf_json_str(&js, engine);
        sg_buf_printf(&js, ",\n  \"data\": ");
        sg_buf_json_str(&js, data);
        sg_buf_printf(&js,
                      ",\n  \"way\": %d,\n  \"queries\": %d,\n  \"episodes\": %d,\n"
                      "  \"seed\": %llu,\n  \"support_norm\": %g,\n  \"results\": [\n",
                      fo.way, fo.queries, fo.episodes, (unsigned long long)fo.seed,
                      (double)sg_engine_support_norm(e, fo.support_norm));
        int first = 1;
        for (int m = 0; m < SG_M__COUNT; m++) {
            if (!res[0].ran[m]) continue;
            sg_buf_printf(&md, "| %s |", sg_method_name((sg_method)m));
            for (int s = 0; s < n_shot; s++) {
                sg_buf_printf(&md, " %.2f ± %.2f |", 100 * res[s].mean[m], 100 * res[s].ci95[m]);
                sg_buf_printf(&js, "%s    {\"method\": \"%s\", \"shot\": %d, \"accuracy\": %.6f, \"ci95\": %.6f}", first ? "" : ",\n",
                              mnames[m], shot_list[s], res[s].mean[m], res[s].ci95[m]);
                first = 0;
            }
            sg_buf_printf(&md, "\n");
        }
        sg_buf_printf(&js, "\n  ],\n  \"paired\": [\n");
        /* SGPS (images) minus each method, per episode: the episodes are shared,
         * so this interval is the one that says whether SGPS is ahead */
        int any = 0;
        for (int m = 0; m < SG_M__COUNT; m++) any |= res[0].has_diff[m];
        if (any) {
            sg_buf_printf(&md, "\nSGPS (images) minus each method, paired over the same episodes (points, mean ± 95 %% CI):\n\n| method |");
            for (int s = 0; s < n_shot; s++) sg_buf_printf(&md, " %d-way %d-shot |", fo.way, shot_list[s]);
            sg_buf_printf(&md, "\n| --- |");
            for (int s = 0; s < n_shot; s++) sg_buf_printf(&md, " --- |");
            sg_buf_printf(&md, "\n");
        }
        first = 1;
        for (int m = 0; m < SG_M__COUNT; m++) {
            if (!res[0].has_diff[m]) continue;
            sg_buf_printf(&md, "| SGPS (images) − %s |", sg_method_name((sg_method)m));
            for (int s = 0; s < n_shot; s++) {
                sg_buf_printf(&md, " %+.2f ± %.2f |", 100 * res[s].diff[m], 100 * res[s].diff_ci95[m]);
                sg_buf_printf(&js, "%s    {\"method\": \"%s\", \"shot\": %d, \"sgps_minus\": %.6f, \"ci95\": %.6f}",
                              first ? "" : ",\n", mnames[m], shot_list[s], res[s].diff[m], res[s].diff_ci95[m]);
                first = 0;
            }
            sg_buf_printf(&md, "\n");
        }
        sg_buf_printf(&js, "\n  ]\n}\n");
        printf("%.*s", (int)md.len, (const char *)md.data);
        if (out) {
            char p1[4096], p2[4096];
            snprintf(p1, sizeof p1, "%s.json", out);
            snprintf(p2, sizeof p2, "%s.md", out);
            if (sg_file_write_atomic(p1, js.data, js.len, &err) != SG_OK ||
                sg_file_write_atomic(p2, md.data, md.len, &err) != SG_OK) {
                sg_log(SG_LOG_ERROR, "%s", err.msg);
                code = 1;
            }
        }
    }
    sg_buf_free(&md);
    sg_buf_free(&js);
    sg_dataset_free(&d);
    sg_registry_texts_free(&rt);
    sg_engine_free(e);
    return finish_mpi(code);
}
