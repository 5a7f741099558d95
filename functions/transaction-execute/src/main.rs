reprocess_core::http_function_main!(transaction_execute::handle);
