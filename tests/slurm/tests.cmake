# slurm tests: sgps under a live one-node Slurm cluster (slurm/cluster-up),
# driven by run_slurm_tests.sh — the batch script, drain + requeue + resume,
# `sgps submit`, the nightly script. They need a cluster, so they run only
# when SG_SLURM_TESTS=1 is set at configure time (baked in) or at test time:
#   slurm/cluster-up && SG_SLURM_TESTS=1 ctest -R slurm && slurm/cluster-down
# Otherwise the driver exits 77 and CTest lists them as skipped. Label: slurm.
if(TARGET sgps AND TARGET sg_pipeline_fixture)
  set(_drv ${CMAKE_CURRENT_LIST_DIR}/run_slurm_tests.sh)
  set(_env "OPENBLAS_NUM_THREADS=1")
  if("$ENV{SG_SLURM_TESTS}" STREQUAL "1")
    list(APPEND _env "SG_SLURM_TESTS=1")
  endif()
  foreach(case run requeue submit nightly)
    add_test(NAME slurm_${case}
      COMMAND bash ${_drv} ${case} $<TARGET_FILE:sgps> $<TARGET_FILE:sg_pipeline_fixture>
              ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/slurm_${case})
    # RUN_SERIAL: the jobs share the cluster's cores with nothing else from CTest.
    set_tests_properties(slurm_${case} PROPERTIES TIMEOUT 240 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE
      LABELS slurm ENVIRONMENT "${_env}")
  endforeach()
endif()
