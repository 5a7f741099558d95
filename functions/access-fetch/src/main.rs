reprocess_core::http_function_main!(access_fetch::handle);
