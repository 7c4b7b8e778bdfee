# hnswlib's headers come from its PyPI sdist, fetched by pip by package name and checked by
# SHA-256, so that no third-party code is copied into the repository. Set HNSWLIB_INCLUDE_DIR
# to use another copy (e.g. Debian's libhnswlib-dev: /usr/include).
set(HNSWLIB_VERSION "0.8.0")
set(HNSWLIB_SDIST_SHA256 "cb6d037eedebb34a7134e7dc78966441dfd04c9cf5ee93911be911ced951c44c")

if(NOT HNSWLIB_INCLUDE_DIR)
  set(_cache "${CMAKE_SOURCE_DIR}/.cache/hnswlib-${HNSWLIB_VERSION}")
  set(_sdist "${_cache}/hnswlib-${HNSWLIB_VERSION}.tar.gz")
  if(NOT EXISTS "${_sdist}")
    message(STATUS "Fetching hnswlib ${HNSWLIB_VERSION} sdist with pip")
    execute_process(
      # Build isolation: pip prepares the sdist's metadata, which needs numpy, before our deps exist.
      COMMAND "${Python_EXECUTABLE}" -m pip download --no-deps --no-binary hnswlib
              "hnswlib==${HNSWLIB_VERSION}" -d "${_cache}"
      RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0 OR NOT EXISTS "${_sdist}")
      message(FATAL_ERROR "could not download the hnswlib ${HNSWLIB_VERSION} sdist with pip "
                          "(set HNSWLIB_INCLUDE_DIR to a local copy of hnswlib's headers)")
    endif()
  endif()
  file(SHA256 "${_sdist}" _sha)
  if(NOT _sha STREQUAL HNSWLIB_SDIST_SHA256)
    message(FATAL_ERROR "${_sdist}: SHA-256 ${_sha} does not match ${HNSWLIB_SDIST_SHA256}; "
                        "delete it and build again")
  endif()
  if(NOT EXISTS "${_cache}/hnswlib-${HNSWLIB_VERSION}/hnswlib/hnswalg.h")
    file(ARCHIVE_EXTRACT INPUT "${_sdist}" DESTINATION "${_cache}")
  endif()
  set(HNSWLIB_INCLUDE_DIR "${_cache}/hnswlib-${HNSWLIB_VERSION}")
endif()

if(NOT EXISTS "${HNSWLIB_INCLUDE_DIR}/hnswlib/hnswalg.h")
  message(FATAL_ERROR "hnswlib headers not found under ${HNSWLIB_INCLUDE_DIR}")
endif()
message(STATUS "hnswlib headers: ${HNSWLIB_INCLUDE_DIR}")
