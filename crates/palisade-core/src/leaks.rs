//! What an answer must not show a client: stack traces and database errors. One list, used
//! by the scanner to find such answers, and by the `responses` and `contract` policies to
//! withhold them, so that what the scan reports is exactly what the gateway hides.

/// What a stack trace looks like, in the languages APIs are written in.
pub const STACK_TRACES: &[&str] = &[
    "Traceback (most recent call last)",
    "Exception in thread",
    "\tat java.",
    "at java.",
    "at org.",
    "panicked at",
    "stack trace",
    "NullPointerException",
    "    at Object.<anonymous>",
    "node_modules/",
    "goroutine 1 [running]",
    "Stack trace:\n#0",
    "System.NullReferenceException",
];

/// What a database error looks like in an answer.
pub const DATABASE_ERRORS: &[&str] = &[
    "SQL syntax",
    "SQLSTATE",
    "ORA-0",
    "PostgreSQL",
    "PG::",
    "sqlite3.",
    "SQLite3::",
    "syntax error at or near",
    "unterminated quoted string",
    "unrecognized token",
    "quoted string not properly terminated",
    "Microsoft OLE DB",
    "MariaDB server version",
];

/// Whether `body` shows a stack trace.
pub fn stack_trace(body: &str) -> bool {
    STACK_TRACES.iter().any(|s| body.contains(s))
}

/// Whether `body` shows a database error.
pub fn database_error(body: &str) -> bool {
    DATABASE_ERRORS.iter().any(|s| body.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_and_database_errors_of_several_stacks() {
        for t in [
            "Traceback (most recent call last):\n  File \"app.py\"",
            "java.lang.NullPointerException\n\tat java.base/",
            "thread 'main' panicked at src/main.rs:3:5",
            "TypeError: x\n    at Object.<anonymous> (/app/index.js:1:1)",
            "goroutine 1 [running]:\nmain.main()",
        ] {
            assert!(stack_trace(t), "{t}");
        }
        for t in [
            "sqlite3.OperationalError: unrecognized token",
            "You have an error in your SQL syntax; check the manual",
            "ERROR: syntax error at or near \"'\"",
        ] {
            assert!(database_error(t), "{t}");
        }
        for t in ["{\"detail\":\"Not found.\"}", "in stock", "a SQL tutorial"] {
            assert!(!stack_trace(t) && !database_error(t), "{t}");
        }
    }
}
