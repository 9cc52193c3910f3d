/* sg_cmd_submit.c — `sgps submit MANIFEST`: a run as a Slurm batch job. It
 * counts the manifest's work units (tasks × shards, without reading any data),
 * sizes the allocation from them (at most one rank per unit: every rank
 * works, rank 0 too; one rank per core), fills the batch script (slurm/sgps.sbatch,
 * built in below) and writes it into the run folder, then hands it to
 * `sbatch --parsable` and prints the job id alone on stdout, so that scripts
 * can write `job=$(sgps submit m.json)`. The job drains on USR1, requeues
 * itself and resumes (docs/slurm.md). */
#include "sg_cli.h"
#include "sg_pipeline.h"

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A copy of slurm/sgps.sbatch, made by slurm/embed-template (tests/slurm compares them). */
static const char sg_sbatch_template[] =
    "#!/bin/bash\n"
    "# sgps.sbatch — the Slurm batch script of one `sgps run` (docs/slurm.md).\n"
    "#\n"
    "# `sgps submit MANIFEST` fills the placeholders (upper-case names between two\n"
    "# at signs), drops every #SBATCH line whose placeholder it leaves empty (no\n"
    "# --partition: the cluster's default partition), writes the result into the\n"
    "# run folder as sgps.sbatch and hands it to `sbatch --parsable`. The sgps\n"
    "# binary holds a copy of this file (cli/sg_cmd_submit.c): after an edit, run\n"
    "# slurm/embed-template; tests/slurm checks that the two match.\n"
    "#\n"
    "# What the job does:\n"
    "#   1) launches `sgps run MANIFEST --out RUN_DIR` on every task of the\n"
    "#      allocation (srun --mpi=pmix, or mpirun, which takes its hosts from\n"
    "#      Slurm), in the background so that this shell can take signals;\n"
    "#   2) USR1 (sent by Slurm 120 s before the time limit, --signal=B:USR1@120,\n"
    "#      or by `scancel --signal=USR1 --batch JOB`) or TERM: passed on to the\n"
    "#      ranks as USR1; each finishes its batch, rank 0 writes status.tsv and\n"
    "#      the run exits 4 (docs/run-folder.md);\n"
    "#   3) exit 4 after USR1: `scontrol requeue` puts the job back in the queue;\n"
    "#      when it starts again SLURM_RESTART_COUNT > 0 and the run gets --resume,\n"
    "#      so only the unfinished units run. After TERM (scancel, preemption) the\n"
    "#      job is not requeued by this script. At most MAX_REQUEUES times;\n"
    "#   4) otherwise the job ends with sgps run's status: 0 ok, 1 invalid manifest\n"
    "#      or I/O, 3 some units failed, 5 nightly drop flagged.\n"
    "#\n"
    "# Resources: one rank per core (OpenBLAS runs single-threaded); every rank works\n"
    "# units, rank 0 too (it also schedules), so a job needs at most one rank per\n"
    "# unit. The run folder must be on a file system that every node sees.\n"
    "\n"
    "#SBATCH --job-name=@JOB_NAME@\n"
    "#SBATCH --partition=@PARTITION@\n"
    "#SBATCH --nodes=@NODES@\n"
    "#SBATCH --ntasks=@NTASKS@\n"
    "#SBATCH --ntasks-per-node=@NTASKS_PER_NODE@\n"
    "#SBATCH --cpus-per-task=1\n"
    "#SBATCH --time=@TIME@\n"
    "#SBATCH --signal=B:USR1@120\n"
    "#SBATCH --requeue\n"
    "#SBATCH --open-mode=append\n"
    "#SBATCH --output=@RUN_DIR@/slurm-%j.out\n"
    "#SBATCH --dependency=@DEPENDENCY@\n"
    "\n"
    "set -eu\n"
    "\n"
    "sgps=@SGPS@                 # the sgps binary that wrote this script\n"
    "manifest=@MANIFEST@\n"
    "run_dir=@RUN_DIR@\n"
    "baseline=@BASELINE@         # nightly: an earlier run folder to compare with, or empty\n"
    "launcher=@LAUNCHER@         # srun or mpirun\n"
    "max_requeues=@MAX_REQUEUES@ # guards against a time limit too short for any unit\n"
    "resume=@RESUME@             # 1: keep the units an earlier run finished (sgps submit --resume)\n"
    "\n"
    "export OPENBLAS_NUM_THREADS=1\n"
    "restarts=${SLURM_RESTART_COUNT:-0}\n"
    "\n"
    "args=(run \"$manifest\" --out \"$run_dir\")\n"
    "if [ \"$restarts\" -gt 0 ] || [ \"$resume\" = 1 ]; then\n"
    "  args+=(--resume)\n"
    "fi\n"
    "if [ -n \"$baseline\" ]; then\n"
    "  if [ -f \"$baseline/summary.json\" ]; then\n"
    "    args+=(--baseline \"$baseline\")\n"
    "  else\n"
    "    echo \"sgps.sbatch: baseline $baseline has no summary.json; running without a comparison\" >&2\n"
    "  fi\n"
    "fi\n"
    "case $launcher in\n"
    "srun) launch=(srun --mpi=pmix) ;;\n"
    "mpirun)\n"
    "  launch=(mpirun)\n"
    "  if [ \"$(id -u)\" = 0 ]; then\n"
    "    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n"
    "  fi\n"
    "  ;;\n"
    "*)\n"
    "  echo \"sgps.sbatch: unknown launcher '$launcher'\" >&2\n"
    "  exit 2\n"
    "  ;;\n"
    "esac\n"
    "\n"
    "# Both signals drain the run the same way; only USR1 (the planned stop before\n"
    "# the time limit) leads to a requeue.\n"
    "got=\"\"\n"
    "pid=\"\"\n"
    "drain() {\n"
    "  got=$1\n"
    "  if [ -n \"$pid\" ]; then kill -USR1 \"$pid\" 2>/dev/null || true; fi\n"
    "}\n"
    "trap 'drain USR1' USR1\n"
    "trap 'drain TERM' TERM\n"
    "\n"
    "echo \"sgps.sbatch: job ${SLURM_JOB_ID:-?} restart $restarts on ${SLURM_JOB_NODELIST:-?} at $(date -u +%FT%TZ): ${launch[*]} $sgps ${args[*]}\"\n"
    "rc=4\n"
    "if [ -z \"$got\" ]; then\n"
    "  \"${launch[@]}\" \"$sgps\" \"${args[@]}\" &\n"
    "  pid=$!\n"
    "  # wait returns early each time a trapped signal arrives: wait again until the launcher is gone.\n"
    "  while :; do\n"
    "    if wait \"$pid\"; then rc=0; else rc=$?; fi\n"
    "    kill -0 \"$pid\" 2>/dev/null || break\n"
    "  done\n"
    "  # The launcher may have exited between a trapped wait returning (rc 128 + signal)\n"
    "  # and kill -0: collect its real status (bash keeps it for a second wait).\n"
    "  if wait \"$pid\" 2>/dev/null; then rc=0; else r=$?; [ \"$r\" -eq 127 ] || rc=$r; fi\n"
    "fi\n"
    "echo \"sgps.sbatch: sgps run exited $rc at $(date -u +%FT%TZ)${got:+ (after $got)}\"\n"
    "\n"
    "if [ \"$rc\" -eq 4 ] && [ \"$got\" != TERM ] && [ -n \"${SLURM_JOB_ID:-}\" ]; then\n"
    "  if [ \"$restarts\" -ge \"$max_requeues\" ]; then\n"
    "    echo \"sgps.sbatch: interrupted after $restarts requeues (the most allowed); resubmit to finish the run\" >&2\n"
    "    exit 4\n"
    "  fi\n"
    "  echo \"sgps.sbatch: requeueing job $SLURM_JOB_ID; it resumes with --resume\"\n"
    "  if ! scontrol requeue \"$SLURM_JOB_ID\"; then\n"
    "    echo \"sgps.sbatch: scontrol requeue failed; finish with: sgps submit $manifest --out $run_dir --resume\" >&2\n"
    "    exit 4\n"
    "  fi\n"
    "  exit 0\n"
    "fi\n"
    "exit \"$rc\"\n";

static const char submit_help[] =
    "usage: sgps submit MANIFEST [--partition P] [--time T] [--max-nodes N]\n"
    "                            [--ntasks-per-node C] [--out DIR] [--baseline RUN_DIR]\n"
    "                            [--job-name NAME] [--dependency DEP] [--launcher srun|mpirun]\n"
    "                            [--resume] [--max-requeues N] [--dry-run]\n\n"
    "Submits `sgps run MANIFEST` as a Slurm batch job sized to the manifest's work units\n"
    "(tasks x shards): ranks = units (every rank works, rank 0 also schedules), nodes =\n"
    "ceil(ranks / C), at most N (then ranks = N x C). Writes the batch script to\n"
    "RUN_DIR/sgps.sbatch, runs `sbatch --parsable` and prints the job id. The job's output\n"
    "goes to RUN_DIR/slurm-JOBID.out. Slurm sends USR1 120 s before the time limit: the run\n"
    "drains, the job requeues itself and resumes where it stopped (docs/slurm.md).\n\n"
    "  --partition P        partition (default: the cluster's default)\n"
    "  --time T             time limit, as sbatch takes it (default: the partition's)\n"
    "  --max-nodes N        at most N nodes (default: no limit but the units)\n"
    "  --ntasks-per-node C  ranks per node, one per core (default: this host's cores)\n"
    "  --out DIR            run folder (default: the manifest's \"output\")\n"
    "  --baseline RUN_DIR   nightly: compare with an earlier run (sgps run --baseline)\n"
    "  --job-name NAME      (default: sgps)\n"
    "  --dependency DEP     sbatch dependency, e.g. singleton or afterok:123\n"
    "  --launcher L         srun (srun --mpi=pmix, default) or mpirun\n"
    "  --resume             keep the units an earlier run of this folder finished\n"
    "  --max-requeues N     give up requeueing after N drains (default 10)\n"
    "  --dry-run            print the batch script; write and submit nothing\n"
    "Exit status: 0 submitted (or printed); 1 invalid manifest, I/O error, sbatch missing or\n"
    "refusing the job (its message is shown); 2 bad arguments.\n";

/* Values go into the script unquoted and into #SBATCH lines: keep them to
 * characters that mean nothing to bash or to sbatch's %-patterns. */
static int sg_submit_safe(const char *s) {
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._/+,:=@-", *p)))
            return 0;
    return 1;
}

typedef struct sg_submit_var {
    const char *name;  /* placeholder without the at signs */
    const char *value; /* "" drops the #SBATCH line it stands in */
} sg_submit_var;

static const char *sg_submit_lookup(const sg_submit_var *vars, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0) return vars[i].value;
    return NULL;
}

/* Fills @NAME@ placeholders line by line, in one pass (values are never
 * rescanned). A `#SBATCH` line whose placeholder is empty is left out; an
 * at sign not followed by a known NAME@ stays as it is. */
static void sg_submit_fill(const char *tmpl, const sg_submit_var *vars, size_t n, sg_buf *out) {
    const char *line = tmpl;
    sg_buf l = {0};
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) + 1 : strlen(line);
        int drop = 0;
        l.len = 0;
        for (size_t i = 0; i < len; i++) {
            if (line[i] == '@') {
                size_t j = i + 1;
                while (j < len && ((line[j] >= 'A' && line[j] <= 'Z') || line[j] == '_')) j++;
                const char *v = j < len && line[j] == '@' && j > i + 1
                                    ? sg_submit_lookup(vars, n, line + i + 1, j - i - 1)
                                    : NULL;
                if (v) {
                    if (!*v && strncmp(line, "#SBATCH", 7) == 0) drop = 1;
                    sg_buf_append(&l, v, strlen(v));
                    i = j;
                    continue;
                }
            }
            sg_buf_append(&l, line + i, 1);
        }
        if (!drop) sg_buf_append(out, l.data, l.len);
        line += len;
    }
    sg_buf_free(&l);
    sg_buf_append(out, "", 1);
    out->len--;
}

/* Runs `sbatch --parsable SCRIPT`: its stderr goes straight to ours, its
 * stdout (JOBID or JOBID;CLUSTER) is read back. Returns 0 with the id in
 * job, or 1 after saying why. */
static int sg_submit_sbatch(const char *script, char *job, size_t job_cap) {
    int fd[2];
    if (pipe(fd) != 0) {
        fprintf(stderr, "sgps submit: pipe: %s\n", strerror(errno));
        return 1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    char *argv[] = {"sbatch", "--parsable", (char *)script, NULL};
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    int e = posix_spawnp(&pid, "sbatch", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        close(fd[0]);
        if (e == ENOENT)
            fprintf(stderr, "sgps submit: sbatch was not found in PATH: submitting needs Slurm's client tools "
                            "(Debian: slurm-client) on a host of the cluster; the script is in %s\n",
                    script);
        else fprintf(stderr, "sgps submit: cannot run sbatch: %s\n", strerror(e));
        return 1;
    }
    char out[256], rest[256];
    size_t n = 0;
    for (;;) {
        int full = n == sizeof out - 1;
        ssize_t r = full ? read(fd[0], rest, sizeof rest) : read(fd[0], out + n, sizeof out - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (!full) n += (size_t)r;
    }
    close(fd[0]);
    out[n] = 0;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        if (WIFEXITED(st))
            fprintf(stderr, "sgps submit: sbatch refused the job (exit %d, its message above); the script is in %s\n",
                    WEXITSTATUS(st), script);
        else fprintf(stderr, "sgps submit: sbatch was killed by signal %d\n", WTERMSIG(st));
        return 1;
    }
    size_t k = strspn(out, "0123456789");
    if (k == 0 || k >= job_cap) {
        fprintf(stderr, "sgps submit: sbatch answered '%s', not a job id\n", out);
        return 1;
    }
    memcpy(job, out, k);
    job[k] = 0;
    return 0;
}

/* An absolute path for the script (the job may start in another folder). */
static int sg_submit_abs(const char *what, const char *path, char *out) {
    if (!realpath(path, out)) {
        fprintf(stderr, "sgps submit: %s %s: %s\n", what, path, strerror(errno));
        return 0;
    }
    if (!sg_submit_safe(out)) {
        fprintf(stderr,
                "sgps submit: %s %s: the batch script takes paths of letters, digits and ._/+,:=@- only\n",
                what, out);
        return 0;
    }
    return 1;
}

int sg_cmd_submit(int argc, char **argv) {
    const char *path = NULL, *partition = "", *time_limit = "", *out_dir = NULL, *baseline = NULL;
    const char *job_name = "sgps", *dependency = "", *launcher = "srun";
    long max_nodes = 0, per_node = 0, max_requeues = 10;
    int dry_run = 0, resume = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (sg_cli_is_help(argv[i])) {
            fputs(submit_help, stdout);
            return 0;
        } else if (sg_cli_opt(argc, argv, &i, "--partition", &v)) partition = v;
        else if (sg_cli_opt(argc, argv, &i, "--time", &v)) time_limit = v;
        else if (sg_cli_opt(argc, argv, &i, "--out", &v)) out_dir = v;
        else if (sg_cli_opt(argc, argv, &i, "--baseline", &v)) baseline = v;
        else if (sg_cli_opt(argc, argv, &i, "--job-name", &v)) job_name = v;
        else if (sg_cli_opt(argc, argv, &i, "--dependency", &v)) dependency = v;
        else if (sg_cli_opt(argc, argv, &i, "--launcher", &v)) launcher = v;
        else if (sg_cli_opt(argc, argv, &i, "--max-nodes", &v)) {
            if (!sg_cli_parse_int(v, 1, 100000, &max_nodes)) {
                fprintf(stderr, "sgps submit: --max-nodes: '%s' is not an integer in 1..100000\n", v);
                return 2;
            }
        } else if (sg_cli_opt(argc, argv, &i, "--ntasks-per-node", &v)) {
            if (!sg_cli_parse_int(v, 1, 65536, &per_node)) {
                fprintf(stderr, "sgps submit: --ntasks-per-node: '%s' is not an integer in 1..65536\n", v);
                return 2;
            }
        } else if (sg_cli_opt(argc, argv, &i, "--max-requeues", &v)) {
            if (!sg_cli_parse_int(v, 0, 1000, &max_requeues)) {
                fprintf(stderr, "sgps submit: --max-requeues: '%s' is not an integer in 0..1000\n", v);
                return 2;
            }
        } else if (strcmp(argv[i], "--dry-run") == 0) dry_run = 1;
        else if (strcmp(argv[i], "--resume") == 0) resume = 1;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else return sg_cli_bad_arg("submit", argv, i, i);
    }
    if (!path) {
        fprintf(stderr, "sgps submit: a manifest is required (see --help)\n");
        return 2;
    }
    if (strcmp(launcher, "srun") != 0 && strcmp(launcher, "mpirun") != 0) {
        fprintf(stderr, "sgps submit: --launcher: '%s' is not srun or mpirun\n", launcher);
        return 2;
    }
    const char *opts[][2] = {{"--partition", partition}, {"--time", time_limit}, {"--job-name", job_name},
                             {"--dependency", dependency}};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!sg_submit_safe(opts[i][1])) {
            fprintf(stderr, "sgps submit: %s '%s': use letters, digits and ._/+,:=@- only\n", opts[i][0],
                    opts[i][1]);
            return 2;
        }
    if (!*job_name) {
        fprintf(stderr, "sgps submit: --job-name: a name is required\n");
        return 2;
    }
    if (per_node == 0) { /* as nproc counts: the CPUs this process may run on */
        cpu_set_t cs;
        long cores = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : sysconf(_SC_NPROCESSORS_ONLN);
        per_node = cores > 0 ? cores : 1;
    }

    sg_diag d = {0};
    sg_manifest *m = NULL;
    int ok = sg_manifest_load(path, 0, &m, &d) == SG_OK && m;
    for (size_t i = 0; i < d.n; i++) fprintf(stderr, "%s\n", d.msgs[i]);
    sg_diag_free(&d);
    if (!ok || m->n_units == 0) {
        if (ok) fprintf(stderr, "sgps submit: %s: no work units (no shard matched)\n", path);
        else fprintf(stderr, "sgps submit: %s: invalid manifest; nothing submitted\n", path);
        sg_manifest_free(m);
        return 1;
    }

    /* Sizing: every worker rank gets at least one unit. */
    size_t units = m->n_units;
    long ranks = (long)units; /* every rank works, rank 0 too (it also schedules) */
    long nodes = (ranks + per_node - 1) / per_node;
    if (max_nodes && nodes > max_nodes) {
        nodes = max_nodes;
        ranks = nodes * per_node;
    }
    long node_tasks = ranks < per_node ? ranks : per_node;

    char manifest_abs[PATH_MAX], run_abs[PATH_MAX], base_abs[PATH_MAX] = "", sgps_abs[PATH_MAX];
    const char *run_dir = out_dir ? out_dir : m->output;
    int code = 0;
    sg_err err;
    if (!sg_submit_abs("manifest", path, manifest_abs)) code = 1;
    else if (baseline && !sg_submit_abs("baseline", baseline, base_abs)) code = 1;
    else if (!dry_run && sg_mkdir_p(run_dir, &err) != SG_OK) {
        fprintf(stderr, "sgps submit: %s\n", err.msg);
        code = 1;
    } else if (!dry_run && !sg_submit_abs("run folder", run_dir, run_abs)) code = 1;
    if (dry_run && !code) {
        /* Nothing is created: the folder may not exist yet. */
        if (run_dir[0] == '/') snprintf(run_abs, sizeof run_abs, "%s", run_dir);
        else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
            if (snprintf(run_abs, sizeof run_abs, "%s/%s", cwd, run_dir) >= (int)sizeof run_abs) run_abs[0] = 0;
        }
        if (!sg_submit_safe(run_abs)) {
            fprintf(stderr, "sgps submit: run folder %s: use letters, digits and ._/+,:=@- only\n", run_abs);
            code = 1;
        }
    }
    ssize_t sl = readlink("/proc/self/exe", sgps_abs, sizeof sgps_abs - 1);
    if (!code && (sl <= 0 || (size_t)sl >= sizeof sgps_abs - 1)) {
        fprintf(stderr, "sgps submit: cannot find the sgps binary (/proc/self/exe)\n");
        code = 1;
    } else if (!code) {
        sgps_abs[sl] = 0;
        if (!sg_submit_safe(sgps_abs)) {
            fprintf(stderr, "sgps submit: sgps binary %s: use letters, digits and ._/+,:=@- only\n", sgps_abs);
            code = 1;
        }
    }
    if (code) {
        sg_manifest_free(m);
        return code;
    }

    char s_nodes[32], s_ntasks[32], s_per_node[32], s_requeues[32];
    snprintf(s_nodes, sizeof s_nodes, "%ld", nodes);
    snprintf(s_ntasks, sizeof s_ntasks, "%ld", ranks);
    snprintf(s_per_node, sizeof s_per_node, "%ld", node_tasks);
    snprintf(s_requeues, sizeof s_requeues, "%ld", max_requeues);
    const sg_submit_var vars[] = {
        {"JOB_NAME", job_name},   {"PARTITION", partition},      {"NODES", s_nodes},
        {"NTASKS", s_ntasks},     {"NTASKS_PER_NODE", s_per_node}, {"TIME", time_limit},
        {"RUN_DIR", run_abs},     {"DEPENDENCY", dependency},    {"SGPS", sgps_abs},
        {"MANIFEST", manifest_abs}, {"BASELINE", base_abs},      {"LAUNCHER", launcher},
        {"MAX_REQUEUES", s_requeues}, {"RESUME", resume ? "1" : "0"},
    };
    sg_buf script = {0};
    sg_submit_fill(sg_sbatch_template, vars, sizeof vars / sizeof vars[0], &script);
    fprintf(stderr, "sgps submit: %s: %d tasks, %zu units -> %ld ranks on %ld node%s (%ld per node)%s\n", path,
            m->n_tasks, units, ranks, nodes, nodes == 1 ? "" : "s", node_tasks,
            ranks > 1 ? ", rank 0 also schedules" : "");
    sg_manifest_free(m);

    if (dry_run) {
        fwrite(script.data, 1, script.len, stdout);
        sg_buf_free(&script);
        return 0;
    }
    char script_path[PATH_MAX + 16];
    snprintf(script_path, sizeof script_path, "%s/sgps.sbatch", run_abs);
    if (sg_file_write_atomic(script_path, script.data, script.len, &err) != SG_OK) {
        fprintf(stderr, "sgps submit: %s\n", err.msg);
        sg_buf_free(&script);
        return 1;
    }
    sg_buf_free(&script);
    char job[64];
    if (sg_submit_sbatch(script_path, job, sizeof job) != 0) return 1;
    fprintf(stderr, "sgps submit: job %s; output in %s/slurm-%s.out\n", job, run_abs, job);
    printf("%s\n", job);
    return 0;
}
