# Embeds a text file (the publisher tag) into the binary as a C array.
#   cmake -DIN=web/tag/tag.js -DOUT=build/gen/ap_tag_js.c -DNAME=ap_tag_js -P embed.cmake
# Defines `const unsigned char NAME[]` (NUL-terminated) and `const size_t NAME_len` (without the
# NUL), declared in src/serve/ap_tag.h. Comment-only lines (starting with //, /*, * after
# indentation) and indentation are dropped on the way: a poor man's minifier that is safe for
# code that never starts a line inside a multi-line string or with a '*' operator.
file(READ "${IN}" text)
string(REGEX REPLACE "\r" "" text "${text}")
string(REGEX REPLACE "\n[ \t]+" "\n" text "\n${text}")
string(REGEX REPLACE "\n(//|/\\*|\\*)[^\n]*" "" text "${text}")
string(REGEX REPLACE "\n\n+" "\n" text "${text}")
string(REGEX REPLACE "^\n" "" text "${text}")
get_filename_component(outdir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${outdir}")
file(WRITE "${OUT}.min" "${text}")
file(READ "${OUT}.min" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}.tmp"
     "/* Generated from ${IN} by web/tag/embed.cmake: do not edit. */\n"
     "#include \"serve/ap_tag.h\"\n\n"
     "const unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
     "const size_t ${NAME}_len = ${len};\n")
# Only touch OUT when it changed, so an unchanged tag does not recompile.
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
