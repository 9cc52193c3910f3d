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
  # NAME: run MODE on 1 and on 2 ranks, then compare the two parameter dumps
  function(sg_dataparallel_test name mode)
    set(_d ${_sg_dp_dir}/${name})
    add_test(NAME ${name}_np1
      COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:mpi_dataparallel> ${mode} ${_d}-np1.bin)
    add_test(NAME ${name}_np2
      COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:mpi_dataparallel> ${mode}
              ${_d}-np2.bin)
    add_test(NAME ${name}_compare COMMAND $<TARGET_FILE:mpi_dataparallel> compare ${_d}-np1.bin ${_d}-np2.bin)
    set_tests_properties(${name}_np1 ${name}_np2 PROPERTIES
      FIXTURES_SETUP ${name} TIMEOUT 120 ENVIRONMENT "${_sg_mpi_env}")
    set_tests_properties(${name}_compare PROPERTIES FIXTURES_REQUIRED ${name} TIMEOUT 30)
  endfunction()
  sg_dataparallel_test(synth_dataparallel run)         # stage 2
  sg_dataparallel_test(synth_dataparallel_stage1 run1) # stage 1 with batch-norm groups
  sg_dataparallel_test(synth_dataparallel_distill run1kd) # stage 1 distilled from a teacher
  # resuming a stopped stage 1 on 2 ranks, then on 1 rank (which also refuses the 2-rank state)
  add_test(NAME synth_resume_np2
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:mpi_dataparallel> resume ${_sg_dp_dir})
  add_test(NAME synth_resume_np1
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 $<TARGET_FILE:mpi_dataparallel> resume ${_sg_dp_dir})
  set_tests_properties(synth_resume_np2 PROPERTIES FIXTURES_SETUP synth_resume TIMEOUT 120 ENVIRONMENT "${_sg_mpi_env}")
  set_tests_properties(synth_resume_np1 PROPERTIES FIXTURES_REQUIRED synth_resume TIMEOUT 120 ENVIRONMENT "${_sg_mpi_env}")
endif()
