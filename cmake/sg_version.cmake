# sg_version.cmake — writes the git hash of the source tree into OUT (a C
# file defining sg_git_hash), at build time: run by the sg_version target on
# every build, it rewrites OUT only when the hash changes, so a build after a
# commit or an edit says so and an unchanged tree relinks nothing.
#   cmake -DSRC=<source dir> -DOUT=<file> -P sg_version.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SRC} OUTPUT_VARIABLE hash OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
execute_process(COMMAND git status --porcelain --untracked-files=no
  WORKING_DIRECTORY ${SRC} OUTPUT_VARIABLE dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT hash)
  set(hash "unknown")
elseif(dirty)
  set(hash "${hash}-dirty")
endif()
set(text "#include \"sg_cli.h\"\nconst char *sg_git_hash = \"${hash}\";\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
