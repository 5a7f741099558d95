reprocess_core::http_function_main!(reprocess_reset::handle);
