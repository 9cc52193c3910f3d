/* sg_cmd_run.c — `sgps validate MANIFEST` (every problem at once, before any
 * work), `[mpirun -n P] sgps run MANIFEST` (the batch job: pipeline/ runs
 * the units, jobs/ writes metrics, summary and report) and `sgps run
 * --dry-run` (validate, expand and schedule in one process, write nothing).
 * Exit statuses are documented in docs/run-folder.md. */
#include "sg_cli.h"
#include "sg_jobs.h"
#include "sg_pipeline.h"

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char validate_help[] =
    "usage: sgps validate MANIFEST [--check-exemplars]\n\n"
    "Checks a run manifest and its registry (docs/formats-manifest.md): JSON shape, task\n"
    "ids, registry ids, shots against exemplars, thresholds, label mappings, open_set\n"
    "(reference shards, labels, accept, rule, threshold), the engine\n"
    "(loaded: format and version), every exemplar the tasks use (decoded) and every\n"
    "shard file. Prints every problem, one per line, as FILE: $.json.path: reason.\n\n"
    "  --check-exemplars  also synthesize each task's classifier and run the support check\n"
    "                     of its exemplars (each classified by the classifier synthesized\n"
    "                     without it; tasks with two or more exemplars per class): the count\n"
    "                     per task, each exemplar that looks like another class, and the\n"
    "                     tasks no better than chance — what `sgps run` will report, before\n"
    "                     any shard is read. Does not change the exit status.\n"
    "Exit status: 0 valid (warnings, if any, printed); 1 problems found (all printed); 2 bad arguments.\n";

static void print_diag(const sg_diag *d, FILE *f) {
    for (size_t i = 0; i < d->n; i++) fprintf(f, "%s%s\n", d->kind[i] == SG_DIAG_WARN ? "warning: " : "", d->msgs[i]);
}

/* --check-exemplars: the support check of every task, as `sgps run` would
 * compute it, printed per task from the classifier's metadata. */
static void check_exemplars(const sg_manifest *m) {
    sg_engine *e;
    sg_err err;
    if (sg_engine_load(m->engine_path, &e, &err) != SG_OK) {
        fprintf(stderr, "sgps validate: %s\n", err.msg);
        return;
    }
    printf("support check (each exemplar classified by the classifier synthesized without it):\n");
    int checked = 0, flagged = 0;
    for (int ti = 0; ti < m->n_tasks; ti++) {
        const sg_run_task *t = &m->tasks[ti];
        if (t->shots < 2) {
            printf("  %s: not checked (%s)\n", t->id, t->shots ? "one exemplar per class" : "text only");
            continue;
        }
        sg_classifier *c;
        /* the manifest's method, even where it turns the check off for the run */
        int mode = m->support_check != SG_CHECK_OFF ? m->support_check : SG_CHECK_AUTO;
        if (sg_pipeline_synth_task(m, e, ti, mode, &c, &err) != SG_OK) {
            printf("  %s: %s\n", t->id, err.msg);
            continue;
        }
        cJSON *meta = cJSON_Parse(c->meta_json);
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(meta, "support_check");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(sc, "checked"), *k = cJSON_GetObjectItemCaseSensitive(sc, "correct");
        if (cJSON_IsNumber(n) && cJSON_IsNumber(k) && n->valueint > 0) {
            int low = sg_support_check_failed(k->valueint, n->valueint, t->n_classes);
            checked++;
            flagged += low;
            printf("  %s: %d of %d (chance %.0f %%)%s\n", t->id, k->valueint, n->valueint, 100.0 / t->n_classes,
                   low ? ": warning: no better than chance" : "");
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(sc, "misclassified")) {
                const cJSON *cl = cJSON_GetObjectItemCaseSensitive(it, "class"),
                            *im = cJSON_GetObjectItemCaseSensitive(it, "image"),
                            *pr = cJSON_GetObjectItemCaseSensitive(it, "predicted"),
                            *po = cJSON_GetObjectItemCaseSensitive(it, "own_probability");
                if (!cJSON_IsString(cl) || !cJSON_IsNumber(im) || !cJSON_IsString(pr) || !cJSON_IsNumber(po)) continue;
                const char *path = sg_task_exemplar(m, t, cl->valuestring, im->valueint);
                printf("    %s exemplar %d (%s) looks like %s (probability of its own class %.2f)\n", cl->valuestring,
                       im->valueint, path ? path : "?", pr->valuestring, po->valuedouble);
            }
        }
        cJSON_Delete(meta);
        sg_classifier_free(c);
    }
    printf("%d task%s checked, %d no better than chance\n", checked, checked == 1 ? "" : "s", flagged);
    sg_engine_free(e);
}

int sg_cmd_validate(int argc, char **argv) {
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (sg_cli_is_help(argv[i])) {
            fputs(validate_help, stdout);
            return 0;
        } else if (strcmp(argv[i], "--check-exemplars") == 0) {
            check = 1;
            continue;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "sgps validate: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "sgps validate: a manifest is required (see --help)\n");
        return 2;
    }
    sg_diag d = {0};
    sg_manifest *m = NULL;
    sg_manifest_load(path, 1, &m, &d);
    size_t n_warn = sg_diag_count(&d, SG_DIAG_WARN), n_bad = d.n - n_warn;
    int code = n_bad ? 1 : 0;
    print_diag(&d, stderr);
    if (code) fprintf(stderr, "sgps validate: %s: %zu problem%s\n", path, n_bad, n_bad == 1 ? "" : "s");
    else {
        char w[48] = "";
        if (n_warn) snprintf(w, sizeof w, " (%zu warning%s)", n_warn, n_warn == 1 ? "" : "s");
        printf("%s: valid: %d tasks, %zu units, %zu shard files%s\n", path, m->n_tasks, m->n_units, m->n_files, w);
    }
    if (!code && check) {
        fflush(stdout);
        check_exemplars(m);
    }
    sg_manifest_free(m);
    sg_diag_free(&d);
    return code;
}

static const char run_help[] =
    "usage: [mpirun -n P] sgps run MANIFEST [--out DIR] [--resume] [--retry-failed] [--fail-fast]\n"
    "                                   [--baseline RUN_DIR] [--quiet]\n"
    "       sgps run MANIFEST --dry-run [--ranks P] [--out DIR] [--resume] [--retry-failed]\n\n"
    "Runs every (task, shard) unit of a manifest (open-set tasks add one unit per reference\n"
    "shard): every rank works, rank 0 also hands units out between its own batches, and a\n"
    "task's units go to the rank that already holds its classifier. Each rank synthesizes a\n"
    "task's classifier once and streams the shard through it. Outputs go to the manifest's\n"
    "\"output\" folder (docs/run-folder.md): run.json, status.tsv, tasks/<id>/{classifier.sgpm,\n"
    "predictions.csv, metrics.json, worklist-*.csv, reference.csv}, summary.json, summary.csv,\n"
    "report.html.\n\n"
    "  --out DIR        run folder instead of the manifest's \"output\"\n"
    "  --resume         keep units already complete for this manifest, engine, registry entries,\n"
    "                   exemplars and shard files (run-folder.md says what is compared)\n"
    "  --retry-failed   with --resume (implied), also redo units that failed\n"
    "  --fail-fast      stop handing out units after the first failure\n"
    "  --baseline DIR   nightly: compare with an earlier run folder, write comparison.json/.csv\n"
    "  --quiet          no progress lines\n"
    "  --dry-run        validate as a run would, expand the units and plan the schedule;\n"
    "                   write nothing, print a summary (one process, no MPI: not under mpirun)\n"
    "  --ranks P        with --dry-run: plan for P ranks (default 1)\n"
    "SIGTERM, SIGUSR1 or a first Ctrl-C (SIGINT): finish the current batch, write status, exit 4;\n"
    "--resume completes. A second Ctrl-C ends it at once (--resume still completes). Under\n"
    "mpirun, Ctrl-C is mpirun's: it ends the job; send SIGUSR1 to mpirun to drain instead.\n"
    "Exit status: 0 all units succeeded; 1 invalid manifest or run-folder error;\n"
    "2 bad arguments; 3 some units failed (status.tsv says why); 4 interrupted, resumable;\n"
    "5 (--baseline) a metric dropped beyond noise. --dry-run: 0 runnable, 1 invalid, 2 bad arguments.\n";

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* --dry-run: what rank 0 of a run would check and plan, in this process. */
static int dry_run(const char *path, const sg_run_opts *o, int ranks) {
    double t0 = sg_now();
    sg_diag d = {0};
    sg_manifest *m = NULL;
    int ok = sg_manifest_load(path, 1, &m, &d) == SG_OK;
    double t_load = sg_now() - t0;
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "%s%s%s\n", d.kind[i] == SG_DIAG_WARN ? "warning: " : "", d.msgs[i],
                d.kind[i] == SG_DIAG_DATA ? " (the units that need it would fail)" : "");
    if (!ok) {
        fprintf(stderr, "sgps run --dry-run: %s: %zu errors; a run would stop before it starts\n", path,
                sg_diag_count(&d, SG_DIAG_ERROR));
        sg_manifest_free(m);
        sg_diag_free(&d);
        return SG_RUN_EXIT_ERROR;
    }
    sg_run_plan p;
    sg_err err;
    t0 = sg_now();
    sg_status st = sg_pipeline_plan(m, o, ranks, &p, &err);
    double t_plan = sg_now() - t0;
    if (st != SG_OK) {
        fprintf(stderr, "sgps run --dry-run: %s\n", err.msg);
        sg_manifest_free(m);
        sg_diag_free(&d);
        return SG_RUN_EXIT_ERROR;
    }
    size_t refs = 0;
    for (int t = 0; t < m->n_tasks; t++) refs += sg_task_n_units(&m->tasks[t]);
    printf("sgps run --dry-run %s: runnable (nothing written)\n", path);
    printf("  run folder     %s\n", sg_run_dir(m, o));
    printf("  tasks          %d (open set %d, calibrated on reference shards %d)\n", p.tasks, p.tasks_open_set,
           p.tasks_calibrated);
    printf("  shard files    %zu distinct, %zu references\n", p.shard_files, refs);
    printf("  units          %zu (open-set reference %zu); %zu to run, %zu kept from an earlier run%s\n", p.units,
           p.units_reference, p.units_to_run, p.units_kept, o->resume ? "" : " (no --resume)");
    printf("  data problems  %zu (units that need the files would fail)\n", sg_diag_count(&d, SG_DIAG_DATA));
    printf("  schedule       %d rank%s: %zu..%zu units per rank, %zu classifier syntheses\n", p.ranks,
           p.ranks == 1 ? "" : "s", p.units_per_rank_min, p.units_per_rank_max, p.syntheses);
    int chk_tasks = 0;
    size_t chk_images = 0;
    for (int t = 0; m->support_check && t < m->n_tasks; t++)
        if (m->tasks[t].shots >= 2) {
            chk_tasks++;
            chk_images += (size_t)m->tasks[t].n_classes * (size_t)m->tasks[t].shots;
        }
    if (m->support_check)
        printf("  support check  %d task%s, %zu exemplars: one more synthesis each, wherever its task is synthesized\n",
               chk_tasks, chk_tasks == 1 ? "" : "s", chk_images);
    else
        printf("  support check  off (\"support_check\": false)\n");
    printf("  time           validate %.3f s, plan %.3f s (part headers %.3f s, scheduling %.1f ns per unit)\n", t_load,
           t_plan, p.seconds_resume, p.units_to_run ? p.seconds_schedule * 1e9 / (double)p.units_to_run : 0.0);
    printf("  peak RSS       %.1f MB\n", peak_rss_mb());
    sg_manifest_free(m);
    sg_diag_free(&d);
    return SG_RUN_EXIT_OK;
}

static int finish(int code) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    return code;
}

int sg_cmd_run(int argc, char **argv) {
    const char *path = NULL, *baseline = NULL;
    sg_run_opts o;
    memset(&o, 0, sizeof o);
    o.progress = 1;
    int dry = 0;
    long ranks = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (sg_cli_is_help(argv[i])) {
            fputs(run_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--out", &v)) o.out = v;
        else if (sg_cli_opt(argc, argv, &i, "--baseline", &v)) baseline = v;
        else if (strcmp(argv[i], "--resume") == 0) o.resume = 1;
        else if (strcmp(argv[i], "--retry-failed") == 0) o.resume = o.retry_failed = 1;
        else if (strcmp(argv[i], "--fail-fast") == 0) o.fail_fast = 1;
        else if (strcmp(argv[i], "--quiet") == 0) o.progress = 0;
        else if (strcmp(argv[i], "--dry-run") == 0) dry = 1;
        else if (sg_cli_opt(argc, argv, &i, "--ranks", &v)) {
            if (!sg_cli_parse_int(v, 1, 1000000L, &ranks)) {
                fprintf(stderr, "sgps run: --ranks wants an integer 1..1000000, got '%s'\n", v);
                return 2;
            }
        }
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else return sg_cli_bad_arg("run", argv, i, i);
    }
    if (!path) {
        fprintf(stderr, "sgps run: a manifest is required (see --help)\n");
        return 2;
    }
    if (ranks && !dry) {
        fprintf(stderr, "sgps run: --ranks only applies with --dry-run (a run uses mpirun's ranks)\n");
        return 2;
    }
    if (dry && baseline) {
        fprintf(stderr, "sgps run: --baseline does not apply with --dry-run (nothing is compared)\n");
        return 2;
    }
    if (dry) {
        /* one process: started by mpirun anyway, ranks other than 0 stay quiet */
        const char *r = getenv("OMPI_COMM_WORLD_RANK");
        if (!r) r = getenv("PMI_RANK");
        if (r && atoi(r) != 0) return 0;
        return dry_run(path, &o, ranks ? (int)ranks : 1);
    }
    o.version = SG_VERSION_STRING;
    o.git_hash = sg_git_hash;
    const char *delay = getenv("SGPS_TEST_BATCH_DELAY_MS"); /* tests: make a run slow enough to interrupt */
    if (delay) o.unit_delay_s = atof(delay) / 1000.0;

    int inited = 0, rank, size;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    sg_log_set_rank(size > 1 ? rank : -1);
    if (rank != 0) sg_log_set_level(SG_LOG_WARN);
    sg_pipeline_install_signals();

    sg_diag d = {0};
    sg_manifest *m = NULL;
    int ok = 1;
    if (rank == 0) {
        ok = sg_manifest_load(path, 1, &m, &d) == SG_OK;
        for (size_t i = 0; i < d.n; i++)
            sg_log(d.kind[i] == SG_DIAG_ERROR ? SG_LOG_ERROR : SG_LOG_WARN, "%s%s", d.msgs[i],
                   d.kind[i] == SG_DIAG_DATA ? " (the units that need it will fail)" : "");
        if (!ok) sg_log(SG_LOG_ERROR, "%s: %zu errors; nothing was run", path, sg_diag_count(&d, SG_DIAG_ERROR));
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok) {
        sg_manifest_free(m);
        sg_diag_free(&d);
        return finish(SG_RUN_EXIT_ERROR);
    }
    if (rank != 0) ok = sg_manifest_load(path, 0, &m, &d) == SG_OK;
    /* the tasks' hashes cover the registry, exemplars and shard lists each rank read */
    char hash[130] = {0};
    if (m) snprintf(hash, sizeof hash, "%s%s", m->config_hash, m->tasks_hash);
    MPI_Bcast(hash, sizeof hash, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (!m || strncmp(hash, m->config_hash, 64) != 0 || strcmp(hash + 64, m->tasks_hash) != 0) ok = 0;
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (!ok)
            sg_log(SG_LOG_ERROR, "%s: the manifest, engine, registry, exemplars or shard lists read differently on this rank",
                   path);
        sg_manifest_free(m);
        sg_diag_free(&d);
        return finish(SG_RUN_EXIT_ERROR);
    }

    sg_err err;
    sg_run_result res;
    int code = SG_RUN_EXIT_OK;
    if (sg_pipeline_run(m, &o, MPI_COMM_WORLD, &res, &err) != SG_OK) {
        sg_log(SG_LOG_ERROR, "%s", err.msg);
        code = SG_RUN_EXIT_ERROR;
    } else if (rank == 0) {
        /* a signal may have reached another rank only: its interrupted unit says so */
        int stopped = sg_pipeline_stop_requested() || res.units_interrupted > 0;
        int flagged = 0;
        if (!stopped && sg_jobs_finalize(m, sg_run_dir(m, &o), &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s", err.msg);
            code = SG_RUN_EXIT_ERROR;
        } else if (!stopped && baseline && sg_jobs_compare(m, sg_run_dir(m, &o), baseline, &flagged, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s", err.msg);
            code = SG_RUN_EXIT_ERROR;
        }
        if (sg_pipeline_finish_run_json(m, &o, &res, &err) != SG_OK) {
            sg_log(SG_LOG_ERROR, "%s", err.msg);
            code = SG_RUN_EXIT_ERROR;
        }
        if (code == SG_RUN_EXIT_OK) {
            if (stopped) code = SG_RUN_EXIT_INTERRUPTED;
            else if (res.units_failed || res.units_not_run) code = SG_RUN_EXIT_FAILED;
            else if (flagged) code = SG_RUN_EXIT_REGRESSION;
        }
        if (o.progress || code)
            sg_log(code ? SG_LOG_WARN : SG_LOG_INFO,
                   "%s: %zu units ok (%zu from earlier runs), %zu failed, %zu not run; %llu images in %.1f s%s",
                   sg_run_dir(m, &o), res.units_ok, res.units_resumed, res.units_failed, res.units_not_run,
                   (unsigned long long)res.images, res.seconds,
                   code == SG_RUN_EXIT_INTERRUPTED ? "; interrupted: run again with --resume" : "");
    }
    sg_run_result_free(&res);
    sg_manifest_free(m);
    sg_diag_free(&d);
    return finish(code);
}
