/// The ICD's timing rules (§4), named once.
public enum ICDTiming {
    /// "Hosts send HEARTBEAT at least every 250 ms while scanning."
    public static let heartbeatLimit: Duration = .milliseconds(250)
    /// Gap between host frames, while X-rays are on, after which the device's watchdog ends
    /// the exposure. The unit states its own (`watchdog_ms` in GET_INFO); 1000 is ICD v1's.
    public static let watchdog: Duration = .milliseconds(1000)
}
