;; The ABI 1 (legacy Rust Vultrino) guest of the benchmarks: a fixed JSON answer, so the figure
;; is the host's round trip through vultrino_alloc / vultrino_execute / vultrino_free.
(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (data (i32.const 16) "{\"code\":0,\"data\":\"pong\",\"error\":null}")
  (func (export "vultrino_plugin_version") (result i32) (i32.const 1))
  (func (export "vultrino_alloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $bump) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func (export "vultrino_free") (param i32 i32)
    (global.set $bump (i32.const 4096)))
  (func (export "vultrino_execute") (param $ptr i32) (param $len i32) (result i64)
    ;; pointer in the high 32 bits, length in the low 32 bits
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 37))))
