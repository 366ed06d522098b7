;; The component echo guest of the benchmarks: the ABI 2 echo (abi2_echo.wat) as a 1.1.0
;; component. `execute` answers {"ok": <the request map>} as bytes; `execute-text` gives the
;; same answer as text (its prefix 0x81 0xa2 "ok" is two characters of two UTF-8 bytes each,
;; then the request's text unchanged). A bump allocator that post-return resets keeps the
;; guest's own work negligible, so the figure is the host's round trip.
(component
  (import "vultrino:plugin/host@1.1.0" (instance $host
    (type $level (enum "debug" "info" "warn" "error"))
    (export "log-level" (type $ll (eq $level)))
    (export "log" (func (param "level" $ll) (param "message" string)))))
  (core module $M
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
    (func $answer (param $ptr i32) (param $len i32) (param $head i64) (param $n i32)
      (result i32)
      (local $out i32) (local $ret i32)
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                     (i32.add (local.get $len) (local.get $n))))
      (i64.store (local.get $out) (local.get $head))
      (memory.copy (i32.add (local.get $out) (local.get $n)) (local.get $ptr) (local.get $len))
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get $out))
      (i32.store offset=4 (local.get $ret) (i32.add (local.get $len) (local.get $n)))
      (local.get $ret))
    ;; 0x81 0xa2 'o' 'k', little-endian
    (func (export "execute") (param $ptr i32) (param $len i32) (result i32)
      (call $answer (local.get $ptr) (local.get $len) (i64.const 0x6b6fa281) (i32.const 4)))
    ;; c2 81 c2 a2 'o' 'k', little-endian
    (func (export "execute_text") (param $ptr i32) (param $len i32) (result i32)
      (call $answer (local.get $ptr) (local.get $len) (i64.const 0x6b6fa2c281c2) (i32.const 6)))
    (func (export "post") (param i32)
      (global.set $bump (i32.const 1024))))
  (core instance $m (instantiate $M))
  (func $execute (param "request" (list u8)) (result (list u8))
    (canon lift (core func $m "execute") (memory (core memory $m "memory"))
      (realloc (core func $m "cabi_realloc")) (post-return (core func $m "post"))))
  (func $execute_text (param "request" string) (result string)
    (canon lift (core func $m "execute_text") (memory (core memory $m "memory"))
      (realloc (core func $m "cabi_realloc")) (post-return (core func $m "post"))))
  (instance $handler (export "execute" (func $execute))
    (export "execute-text" (func $execute_text)))
  (export "vultrino:plugin/handler@1.1.0" (instance $handler)))
