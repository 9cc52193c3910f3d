# synth tests beyond the Criterion executable: the data-parallel equivalence
# program, run on 1 and on 2 ranks through mpirun, then compared.
if(TARGET sg_synth AND MPIEXEC_EXECUTABLE)
  add_executable(mpi_dataparallel ${CMAKE_CURRENT_SOURCE_DIR}/synth/mpi_dataparallel.c)
  target_link_libraries(mpi_dataparallel PRIVATE sg_synth sg_model sg_core MPI::MPI_C)
  set(_sg_dp_dir ${CMAKE_CURRENT_BINARY_DIR}/synth_dataparallel)
  file(MAKE_DIRECTORY ${_sg_dp_dir})
  set(_sg_mpi_env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
      OMPI_MCA_rmaps_base_oversubscribe=1
      LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/pipeline/lsan-mpi.supp:fast_unwind_on_malloc=0)
  add_test(NAME synth_dataparallel_np1
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:mpi_dataparallel> run ${_sg_dp_dir}/np1.bin)
  add_test(NAME synth_dataparallel_np2
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:mpi_dataparallel> run ${_sg_dp_dir}/np2.bin)
  add_test(NAME synth_dataparallel_compare
    COMMAND $<TARGET_FILE:mpi_dataparallel> compare ${_sg_dp_dir}/np1.bin ${_sg_dp_dir}/np2.bin)
  set_tests_properties(synth_dataparallel_np1 synth_dataparallel_np2 PROPERTIES
    FIXTURES_SETUP synth_dp TIMEOUT 120 ENVIRONMENT "${_sg_mpi_env}")
  set_tests_properties(synth_dataparallel_compare PROPERTIES FIXTURES_REQUIRED synth_dp TIMEOUT 30)
  add_test(NAME synth_dataparallel_stage1_np1
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:mpi_dataparallel> run1 ${_sg_dp_dir}/s1np1.bin)
  add_test(NAME synth_dataparallel_stage1_np2
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:mpi_dataparallel> run1 ${_sg_dp_dir}/s1np2.bin)
  add_test(NAME synth_dataparallel_stage1_compare
    COMMAND $<TARGET_FILE:mpi_dataparallel> compare ${_sg_dp_dir}/s1np1.bin ${_sg_dp_dir}/s1np2.bin)
  set_tests_properties(synth_dataparallel_stage1_np1 synth_dataparallel_stage1_np2 PROPERTIES
    FIXTURES_SETUP synth_dp1 TIMEOUT 120 ENVIRONMENT "${_sg_mpi_env}")
  set_tests_properties(synth_dataparallel_stage1_compare PROPERTIES FIXTURES_REQUIRED synth_dp1 TIMEOUT 30)
endif()
