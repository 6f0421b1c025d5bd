/// The ICD's timing rules (§4), named once.
public enum ICDTiming {
    /// "Hosts send HEARTBEAT at least every 250 ms while scanning."
    public static let heartbeatLimit: Duration = .milliseconds(250)
    /// Gap between host frames, while X-rays are on, after which the device's watchdog ends
    /// the exposure. The unit states its own (`watchdog_ms` in GET_INFO); 1000 is ICD v1's.
    public static let watchdog: Duration = .milliseconds(1000)
}

/// The ICD's USB identity (§1), named once: the host's defaults (configurable), the udev rule
/// (Systemd/70-dexa.rules, which cannot import this and says so) and the simulator's USB
/// gadget all use these.
public enum ICDUSB {
    /// pid.codes vendor 0x1209, product 0xDE8A.
    public static let vendorID: UInt16 = 0x1209
    public static let productID: UInt16 = 0xDE8A
}

/// The ICD's motion rules (§3 HOME and MOVE), named once.
public enum ICDMotion {
    /// Carriage speed per axis: 50 mm/s.
    public static let axisSpeedUmPerSecond = 50_000.0
    /// Arm rotation: 90° in 5 s, in tenths of a degree per second.
    public static let armSpeedTenthsPerSecond = 180.0
    /// The arm's range, tenths of a degree: 0 (AP) to 900 (lateral).
    public static let armRangeX10: ClosedRange<Int16> = 0...900
}
