reprocess_core::http_function_main!(admin::handle);
