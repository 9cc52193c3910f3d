# demo tests: the world generator (cli/sg_demo_*.c, compiled into the test)
# checked through io's reader and pipeline's manifest loader, and the
# `sgps demo-world` command line driven by run_cli_tests.sh (which also feeds
# the world to train-engine, and to validate/run when the binary has them).
if(TARGET sg_pipeline)
  sg_add_test_module(demo sg_pipeline sg_synth sg_io sg_model sg_core MPI::MPI_C)
endif()
if(TARGET test_demo)
  target_sources(test_demo PRIVATE ${CMAKE_SOURCE_DIR}/cli/sg_demo_render.c ${CMAKE_SOURCE_DIR}/cli/sg_demo_text.c
                                   ${CMAKE_SOURCE_DIR}/cli/sg_demo_world.c)
  target_include_directories(test_demo PRIVATE ${CMAKE_SOURCE_DIR}/cli)
  target_link_libraries(test_demo PRIVATE PNG::PNG ${MATH_LIB})
  # the engine test initializes MPI (singleton): Open MPI's leftovers are suppressed under ASan
  set_tests_properties(demo PROPERTIES TIMEOUT 300 ENVIRONMENT
    "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_LIST_DIR}/lsan-mpi.supp")
endif()
if(TARGET sgps)
  add_test(NAME demo_cli COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/run_cli_tests.sh $<TARGET_FILE:sgps>
                                 ${CMAKE_CURRENT_BINARY_DIR}/demo_cli)
  # about 20 s in a release build, 60-70 s under ASan on an idle 2-core machine
  set_tests_properties(demo_cli PROPERTIES TIMEOUT 300 ENVIRONMENT
    "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1")
endif()
