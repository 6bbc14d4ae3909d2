-- 02_adding_arrays.lua
-- Ports seed 02 "Ray Core: Remote Functions as Tasks, Remote Stateful Class
-- Instances as Actors", Example 2 "Adding two np arrays": tasks read two
-- arrays from files, add them and sum them, passing ObjectRefs from one task
-- to the next.
--
-- Run from the repository root:   build/lray examples/02_adding_arrays.lua
--
-- The tutorial read data/file_1.txt and data/file_2.txt (10x10 integers, CSV
-- with "#" comments). This port writes two such files to a temporary directory
-- first (random integers 0..99, seeded, so every run prints the same numbers).
-- numpy arrays become flat lray.array("int32_t", 100) arrays in row-major order.
-- Note: the tutorial's add_array returned np.add(arr1, arr1) by mistake; this
-- port adds arr1 + arr2 as the text says. Runs in about a second.
local lray = require("lray")

local ROWS, COLS = 10, 10

-- Writes a ROWS x COLS CSV file of pseudo-random integers 0..99.
local function write_data_file(path, seed)
  local state = seed
  local f = assert(io.open(path, "w"))
  f:write("# ", ROWS, "x", COLS, " integers, seed ", seed, "\n")
  for _ = 1, ROWS do
    local row = {}
    for c = 1, COLS do
      state = (state * 16807) % 2147483647   -- Park-Miller "minimal standard" generator
      row[c] = state % 100
    end
    f:write(table.concat(row, ","), "\n")
  end
  f:close()
end

-- Prints the flat array as a ROWS x COLS matrix, like numpy does.
local function show_matrix(a)
  local lines = {}
  for r = 0, ROWS - 1 do
    local row = {}
    for c = 0, COLS - 1 do row[#row + 1] = ("%3d"):format(a[r * COLS + c]) end
    lines[#lines + 1] = (r == 0 and "[[" or " [") .. table.concat(row, " ") .. (r == ROWS - 1 and "]]" or "]")
  end
  return table.concat(lines, "\n")
end

-- A task that reads an array from a file ("#" starts a comment, "," delimits).
local read_array = lray.remote(function(fn)
  local values = {}
  for line in io.lines(fn) do
    if not line:match("^%s*#") then
      for v in line:gmatch("[^,%s]+") do values[#values + 1] = tonumber(v) end
    end
  end
  return lray.array("int32_t", values)
end)

-- A task that adds two arrays element-wise and returns the sum array.
local add_array = lray.remote(function(arr1, arr2)
  local out = lray.array("int32_t", #arr1)
  for i = 0, #arr1 - 1 do out[i] = arr1[i] + arr2[i] end
  return out
end)

-- A task that sums the contents of an array.
local sum_array = lray.remote(function(arr)
  local s = 0
  for i = 0, #arr - 1 do s = s + arr[i] end
  return s
end)

lray.init()

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))
local file_1, file_2 = dir .. "/file_1.txt", dir .. "/file_2.txt"
write_data_file(file_1, 1)
write_data_file(file_2, 2)

-- Read both arrays: each call returns an ObjectRef at once.
local obj_ref_arr1 = read_array.remote(file_1)
print("array 1: " .. tostring(obj_ref_arr1))
local obj_ref_arr2 = read_array.remote(file_2)
print("array 2: " .. tostring(obj_ref_arr2))

-- Add both arrays: the ObjectRefs are resolved to the arrays before the task runs.
local result_obj_ref = add_array.remote(obj_ref_arr1, obj_ref_arr2)
print("result: " .. tostring(result_obj_ref))

-- Fetch the result (blocks until the task has finished).
local result = lray.get(result_obj_ref)
print("Result: add arr1 + arr2:\n" .. show_matrix(result))

-- Sum each array remotely, again passing ObjectRefs as arguments.
local sum_1 = lray.get(sum_array.remote(obj_ref_arr1))
local sum_2 = lray.get(sum_array.remote(obj_ref_arr2))
local sum_r = lray.get(sum_array.remote(result_obj_ref))
print("Sum of arr1: " .. sum_1)
print("Sum of arr2: " .. sum_2)
print("Sum of arr1 + arr2: " .. sum_r)

os.remove(file_1); os.remove(file_2); os.remove(dir)
lray.shutdown()
