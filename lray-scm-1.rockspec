-- LuaRocks: `luarocks make` in a checkout builds lray with its Makefile and
-- installs the binary, the Lua modules, the man page and the editor
-- definitions into the tree (make install with the tree's BINDIR and LUADIR).
-- The binary embeds LuaJIT, so the rock is for Lua 5.1 trees. CI checks it
-- with Debian's luarocks in spec/install_spec.lua.
rockspec_format = "3.0"
package = "lray"
version = "scm-1"
source = {
  -- No public address yet: build from a checkout with `luarocks make`.
  url = "git+file:///dev/null/lray.git",
}
description = {
  summary = "Ray's programming model for Lua: tasks, actors and a shared-memory object store",
  detailed = [[
lray turns Lua functions into tasks that run in parallel worker processes and
class tables into actors, with a shared-memory object store, on LuaJIT and
libuv. Installs the `lray` command (a luajit-compatible interpreter with a
REPL and cluster commands), its Lua modules, lray(1), and LuaLS definitions.]],
  license = "MIT",
  labels = { "distributed", "parallel", "actors", "luajit" },
}
dependencies = {
  "lua >= 5.1, < 5.2",
}
external_dependencies = {
  LUAJIT = { header = "luajit-2.1/luajit.h" },
  LIBUV = { header = "uv.h" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
  },
}
