# pipeline tests: Criterion unit tests (manifest validation, metrics, part
# files, an in-process run) in test_pipeline, and MPI/CLI runs of the sgps
# binary with 1, 2 and 3 ranks driven by run_mpi_tests.sh over a world that
# sg_pipeline_fixture generates (engine, exemplars, registry, shards, manifest).
sg_add_test_module(pipeline sg_jobs sg_pipeline sg_synth sg_io sg_model sg_core MPI::MPI_C)
if(TARGET test_pipeline)
  target_link_libraries(test_pipeline PRIVATE JPEG::JPEG PNG::PNG ${MATH_LIB})
  target_include_directories(test_pipeline PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(pipeline PROPERTIES TIMEOUT 120
    ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endif()

add_executable(sg_pipeline_fixture ${CMAKE_CURRENT_LIST_DIR}/sg_pipeline_fixture.c)
target_link_libraries(sg_pipeline_fixture PRIVATE sg_synth sg_io sg_model sg_core MPI::MPI_C JPEG::JPEG PNG::PNG)

if(TARGET sgps AND MPIEXEC_EXECUTABLE)
  set(_drv ${CMAKE_CURRENT_LIST_DIR}/run_mpi_tests.sh)
  set(_env "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMPI_MCA_rmaps_base_oversubscribe=1")
  foreach(case end_to_end validate ranks corrupt resume inputs signal nightly open_set dry_run names)
    add_test(NAME pipeline_mpi_${case}
      COMMAND bash ${_drv} ${case} ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:sgps> $<TARGET_FILE:sg_pipeline_fixture>
              ${CMAKE_CURRENT_BINARY_DIR}/pipeline_mpi_${case})
    set_tests_properties(pipeline_mpi_${case} PROPERTIES TIMEOUT 120 ENVIRONMENT "${_env}")
  endforeach()
endif()
