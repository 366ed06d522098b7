;; The ABI 2 echo guest of the benchmarks that first spins in a loop (about a millisecond or two
;; of guest time per call), then answers like abi2_echo.wat: the threads benchmark's "slow" plugin.
(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 1024))
  (func $realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
    (global.set $bump (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (global.get $bump) (local.get $have))
      (then
        (drop (memory.grow
          (i32.add (i32.shr_u (i32.sub (global.get $bump) (local.get $have)) (i32.const 16))
                   (i32.const 1))))))
    (local.get $p))
  (func (export "vultrino:plugin/handler@1.0.0#execute")
    (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $ret i32) (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 2000000))))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                   (i32.add (local.get $len) (i32.const 4))))
    ;; 0x81 (map of 1) 0xa2 'o' 'k' (str of 2), stored little-endian
    (i32.store (local.get $out) (i32.const 0x6b6fa281))
    (memory.copy (i32.add (local.get $out) (i32.const 4)) (local.get $ptr) (local.get $len))
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
    (i32.store (local.get $ret) (local.get $out))
    (i32.store offset=4 (local.get $ret) (i32.add (local.get $len) (i32.const 4)))
    (local.get $ret))
  (func (export "cabi_post_vultrino:plugin/handler@1.0.0#execute") (param i32)
    (global.set $bump (i32.const 1024))))
