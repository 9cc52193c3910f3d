# io tests: fixtures are generated with libjpeg/libpng/libarchive by the tests;
# the WebDataset compatibility + CLI test packs a generated folder with the sgps
# binary and reads the shards back with Python's tarfile.
if(TARGET test_io)
  target_link_libraries(test_io PRIVATE JPEG::JPEG PNG::PNG PkgConfig::LIBARCHIVE PkgConfig::CJSON)
  if(TARGET sgps) # CLI cases of test_shards.c (exit codes, `shards ls` going on)
    target_compile_definitions(test_io PRIVATE SG_TEST_SGPS="$<TARGET_FILE:sgps>")
    add_dependencies(test_io sgps)
  endif()
endif()
find_program(SG_PYTHON3 python3)
if(SG_PYTHON3 AND TARGET sgps)
  add_test(NAME io_wds_compat COMMAND ${SG_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/io/wds_compat.py $<TARGET_FILE:sgps>)
  set_tests_properties(io_wds_compat PROPERTIES TIMEOUT 120)
endif()
