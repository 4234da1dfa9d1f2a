/*
 * Every test, in run order: X(name) for a function declared with
 * TEST_IMPL(name) in one of the test-*.c files. The runner builds its table
 * from this list; a name missing from the files is a link error.
 */
#ifndef TEST_LIST_H
#define TEST_LIST_H

#define TEST_LIST(X) \
  /* test-lifecycle.c */ \
  X(version_matches_macros) \
  X(strerror_never_null) \
  X(tcp4_lifecycle) \
  X(tcp6_lifecycle) \
  X(unix_lifecycle) \
  X(localhost_resolves) \
  X(unknown_host_not_found) \
  X(connect_refused) \
  X(connect_nonblocking_in_progress) \
  X(connect_twice_is_connected) \
  X(bind_errors) \
  X(accept_timeout) \
  X(accept_nonblocking_would_block) \
  X(recv_timeout) \
  X(recv_peek_and_eof) \
  X(sockets_are_cloexec) \
  X(os_error_is_per_thread) \
  /* test-address.c */ \
  X(address_malformed) \
  X(address_family_mismatch) \
  X(address_buffer_protocol) \
  X(address_long_unix_path) \
  X(address_unconnected_peer) \
  /* test-options.c */ \
  X(options_defaults) \
  X(options_round_trip_tcp) \
  X(options_round_trip_udp) \
  X(options_round_trip_unix) \
  X(options_invalid_values) \
  /* test-send-blocking.c */ \
  X(send_64mib_tcp4_slow_reader) \
  X(send_8mib_tcp6_slow_reader) \
  X(send_8mib_unix_slow_reader) \
  X(send_timeout_reports_partial_count) \
  X(send_zero_length_stream) \
  X(send_not_connected) \
  X(send_oob_byte) \
  /* test-send-nonblocking.c */ \
  X(send_nonblocking_partial_then_would_block) \
  X(recv_nonblocking_would_block) \
  X(send_nonblocking_zero_length) \
  /* test-sendv.c */ \
  X(sendv_2400_one_byte_segments) \
  X(sendv_slow_reader_partial_writes) \
  X(sendv_mixed_and_empty_segments) \
  /* test-udp.c */ \
  X(udp_connected_send) \
  X(udp_unconnected_send_needs_destination) \
  X(udp_send_to_two_receivers) \
  X(udp_recv_from_reports_sender_ipv4) \
  X(udp_recv_from_reports_sender_ipv6) \
  X(udp_oversized_message_size) \
  X(udp_truncated_recv_message_size) \
  X(udp_zero_length_datagram_send) \
  X(udp_zero_length_datagram_recv) \
  X(udp_recv_from_small_address_cap) \
  X(udp_ipv4_literal_on_inet6) \
  X(udp_sendv_gathers_one_datagram) \
  /* test-errors.c */ \
  X(reset_before_send) \
  X(reset_during_send) \
  X(unix_peer_gone_no_sigpipe) \
  X(tcp_peer_closed_no_sigpipe) \
  X(send_after_shutdown) \
  X(shutdown_not_connected) \
  /* test-bad-args.c */ \
  X(invalid_handles) \
  X(stale_handle_never_reaches_new_socket) \
  X(null_pointers) \
  X(unknown_enum_values) \
  X(lengths_beyond_ptrdiff_max) \
  X(stream_only_calls_on_datagram) \
  /* test-threads.c */ \
  X(four_threads_send_whole_records) \
  X(close_races_blocking_send) \
  X(close_races_blocking_recv) \
  X(handle_table_churn) \
  X(close_while_many_threads_use_handle) \
  /* test-async-send.c */ \
  X(async_send_inline_no_callback) \
  X(async_send_pending_slow_reader) \
  X(async_send_three_8mib_in_order) \
  X(async_send_10000_queued_ops_in_order) \
  X(async_null_callback_faults) \
  X(async_bad_arguments) \
  X(async_sendv_many_segments_array_reused) \
  X(async_inline_completion_off) \
  X(async_pending_send_bytes) \
  X(async_blocking_send_queues_behind) \
  X(async_nonblocking_send_would_block_behind) \
  X(async_two_threads_whole_records) \
  /* test-async-recv.c */ \
  X(async_recv_inline_when_data_ready) \
  X(async_recv_pending_then_data) \
  X(async_recv_eof) \
  X(async_recv_close_aborts) \
  X(async_recv_timeout) \
  X(async_recv_peer_reset) \
  X(async_udp_send_and_recv) \
  X(untimed_blocking_recv_then_calls_that_must_not_wait) \
  /* test-async-recv-chain.c */ \
  X(async_recv_chain_data_and_fin) \
  X(async_recv_chain_urgent_mark) \
  X(async_recv_chain_after_peek) \
  X(async_recv_short_read_then_eof_inline) \
  X(async_recv_chain_many_small_writes) \
  /* test-async-lifecycle.c */ \
  X(async_close_aborts_pending) \
  X(async_cancel_sends_socket_stays_usable) \
  X(async_shutdown_send_aborts_pending) \
  X(async_send_timeout_partial_then_next) \
  X(async_peer_reset_while_pending) \
  X(async_unix_peer_gone_while_pending) \
  X(async_callback_closes_own_socket) \
  X(async_close_races_completion) \
  X(async_callback_chain_million_steps) \
  X(async_callback_chain_inline_off) \
  /* test-async-engine.c */ \
  X(manual_engine_poll_loop) \
  X(manual_engine_poll_waits_for_work) \
  X(engine_free_aborts_pending_manual) \
  X(engine_free_aborts_pending_threaded) \
  X(engine_threaded_callbacks_off_submitter) \
  X(engine_bad_arguments) \
  X(thousand_connections_pending_sends) \
  /* test-matrix.c */ \
  X(bad_input_matrix) \
  /* test-stress.c */ \
  X(stress_1000_connections) \
  /* test-faults.c */ \
  X(fault_stall_blocking_send_timeout) \
  X(fault_stall_async_deadline) \
  X(fault_throttle_nonblocking_partial) \
  X(fault_throttle_async_intact) \
  X(fault_reset_during_blocking_send) \
  X(fault_reset_while_async_pending) \
  X(fault_half_close_end_of_stream) \
  /* test-hygiene.c */ \
  X(cloexec_across_exec) \
  X(no_sigpipe_every_send_flavour) \
  X(fork_child_sockets_and_engines) \
  X(no_fd_leak_workload) \
  /* test-trace.c */ \
  X(trace_set_waits_for_running_calls) \
  X(trace_set_from_callback_is_refused) \
  X(trace_fork_child_not_held_by_parent_calls) \
  X(trace_fork_in_callback_child_still_waits) \
  /* test-queue-engine.c */ \
  X(queue_engine_entries_once_in_order) \
  X(queue_engine_fd_readable_while_entries_wait) \
  X(queue_engine_concurrent_dequeuers) \
  X(queue_engine_lifecycle_events_produce_entries) \
  X(queue_engine_connect_and_accept) \
  X(cleanup_stops_default_engine) \
  X(cleanup_refused_inside_callback) \
  X(cleanup_leaves_program_engines) \
  /* test-lifecycle-races.c */ \
  X(race_recv_async_vs_close) \
  X(deadline_follows_attach) \
  X(completed_operations_leave_nothing) \
  X(engine_free_from_callback_keeps_order) \
  X(engine_free_wakes_waiting_poll) \
  X(engine_free_waits_for_running_callback) \
  X(bad_datagram_fails_alone) \
  X(recv_async_cap_zero_refused) \
  X(fork_child_close_busy_socket) \
  X(linger_round_trips) \
  /* test-lifecycle-regress.c */ \
  X(close_races_recv_async_udp) \
  X(close_races_async_submit_tcp) \
  X(deadline_follows_attach_to_manual_engine) \
  X(completed_sends_leave_nothing_behind) \
  X(engine_free_in_callback_keeps_order) \
  X(engine_free_wakes_waiting_poll_b) \
  X(engine_free_waits_for_running_callback_b) \
  X(datagram_oversized_fails_alone) \
  X(recv_async_zero_cap_refused) \
  X(fork_child_close_never_hangs) \
  X(linger_ms_round_trips) \
  /* test-async-connection.c */ \
  X(connect_async_refused_and_localhost) \
  X(connect_async_timeout_and_close) \
  X(connect_async_sends_queue_behind) \
  X(accept_async_order_and_timeout) \
  X(accept_async_chain_does_not_recurse) \
  X(accept_async_out_of_descriptors) \
  X(shutdown_async_after_32mib_then_fin) \
  X(close_fin_when_sent_rst_when_discarded) \
  X(datagrams_async_v4_v6) \
  /* test-async-lifecycle-calls.c */ \
  X(async_connect_refused) \
  X(async_connect_timed_out) \
  X(async_connect_localhost) \
  X(async_connect_sends_queue_behind) \
  X(async_connect_cancel_sends_leaves_connect) \
  X(async_connect_close_while_connecting) \
  X(async_connect_unix_inline) \
  X(async_accept_order) \
  X(async_accept_chain_no_recursion) \
  X(async_accept_timeout) \
  X(async_accept_emfile_no_spin) \
  X(async_shutdown_32mib_drained_then_fin) \
  X(async_close_unsent_resets_else_fin) \
  X(async_datagrams_ipv4) \
  X(async_datagrams_ipv6) \
  X(async_connection_bad_arguments_no_callback) \
  /* end */

#endif /* TEST_LIST_H */
