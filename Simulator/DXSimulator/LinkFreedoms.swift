import DXProtocol

/// The freedoms ICD v1 leaves a device in how it puts bytes on the bus, chosen per run by a
/// seed so that the host is exercised against every order a conforming DX-1 may use, not
/// only the one our firmware happens to use (docs/simulator.md lists each with the ICD
/// sentence that allows it).
///
/// Seed 0 is the canonical order: events before the response of the command that caused
/// them, one frame per record, nothing held back. Any other seed picks each freedom on or off
/// and its parameters, reproducibly.
public struct LinkFreedoms: Sendable, Equatable, Codable, CustomStringConvertible {
    public var seed: UInt64
    /// Events a command causes go out after its response (ICD §5: "may arrive before or
    /// after that command's response").
    public var eventsAfterResponse = false
    /// Each event is held back by up to this long, device time, in order (ICD §5: "hosts
    /// must accept any order").
    public var eventLagMaxMs = 0.0
    /// IN records are cut at random bytes, inside headers and CRCs (ICD §1: "one transfer
    /// may hold part of a frame").
    public var splitRecords = false
    /// Frames are gathered for up to 2 ms, several to a record (ICD §1: "or several frames").
    public var coalesceFrames = false
    /// Random bytes now and then between frames (ICD §2: receivers resync on bad bytes).
    public var garbageBetweenFrames = false
    /// SCAN_COMPLETE goes out before the scan's last data frame (events and data travel on
    /// different endpoints, ICD §1).
    public var completeBeforeLastData = false
    /// While MOVING or SCANNING, every other GET_STATUS is answered BUSY (ICD §3 has the
    /// status; a unit whose status snapshot is locked by its motion or readout may use it).
    public var busyStatusWhileBusy = false
    /// The watchdog sends WATCHDOG_EXPIRED before SCAN_ABORTED rather than after (the ICD
    /// orders neither).
    public var watchdogEventFirst = false
    /// After RESET the unit is back on the bus at once in BOOT (its boot loader answers
    /// GET_INFO and GET_STATUS, allowed in any state), then leaves again for 100 ms to come
    /// back running (ICD §1 only says it "comes back within 3 s").
    public var reenumeratesAfterBoot = false
    /// The first data frame after each boot is lost (its seq is used): a loss, not an
    /// order, so never chosen by a seed; a test or `--lose-first-data-frame` sets it.
    public var loseFirstDataFrame = false

    /// The canonical order.
    public static let canonical = LinkFreedoms(seed: 0)

    /// Every ordering freedom at once, with events lagging by up to `lagMs`.
    public static func all(lagMs: Double = 40) -> LinkFreedoms {
        var f = LinkFreedoms(seed: 0)
        f.eventsAfterResponse = true
        f.eventLagMaxMs = lagMs
        f.splitRecords = true
        f.coalesceFrames = true
        f.garbageBetweenFrames = true
        f.completeBeforeLastData = true
        f.busyStatusWhileBusy = true
        f.watchdogEventFirst = true
        f.reenumeratesAfterBoot = true
        return f
    }

    public init(seed: UInt64) {
        self.seed = seed
        guard seed != 0 else { return }
        var rng = SplitMix64(seed: seed ^ 0x0D1F_0E55)
        func coin() -> Bool { rng.next() & 1 == 1 }
        eventsAfterResponse = coin()
        // Half the seeds lag events, by up to 5 to 40 ms.
        eventLagMaxMs = coin() ? Double(5 + rng.next() % 36) : 0
        splitRecords = coin()
        coalesceFrames = coin()
        garbageBetweenFrames = coin()
        completeBeforeLastData = coin()
        busyStatusWhileBusy = coin()
        watchdogEventFirst = coin()
        reenumeratesAfterBoot = coin()
    }

    public var description: String {
        var on: [String] = []
        if eventsAfterResponse { on.append("events-after-response") }
        if eventLagMaxMs > 0 { on.append("event-lag≤\(Int(eventLagMaxMs))ms") }
        if splitRecords { on.append("split-records") }
        if coalesceFrames { on.append("coalesce-frames") }
        if garbageBetweenFrames { on.append("garbage") }
        if completeBeforeLastData { on.append("complete-before-last-data") }
        if busyStatusWhileBusy { on.append("busy-status") }
        if watchdogEventFirst { on.append("watchdog-event-first") }
        if reenumeratesAfterBoot { on.append("reenumerates-after-boot") }
        if loseFirstDataFrame { on.append("lose-first-data-frame") }
        return "orderings \(seed): " + (on.isEmpty ? "canonical" : on.joined(separator: ", "))
    }
}

/// What leaves the firmware for the host, shaped by the `LinkFreedoms`: events held back or
/// reordered after responses, records split and gathered, garbage between frames. Lives in
/// the firmware actor; `schedule` runs a closure on it after a device-time delay.
struct LinkShaper {
    let freedoms: LinkFreedoms
    private var rng: SplitMix64
    /// Events waiting for their release time, in order; `releasesData` marks SCAN_COMPLETE.
    private var events: [(releaseAt: Duration, bytes: [UInt8], releasesData: Bool)] = []
    private var lastRelease: Duration = .zero
    /// A scan's last data frame, held until its SCAN_COMPLETE has gone out.
    private var heldData: [UInt8]?
    /// Bytes gathered per endpoint for one record, and whether a flush is scheduled.
    private var gathered: [Endpoint: [UInt8]] = [:]

    init(freedoms: LinkFreedoms) {
        self.freedoms = freedoms
        rng = SplitMix64(seed: freedoms.seed &+ 0x5EED)
    }

    mutating func reset() {
        events = []
        heldData = nil
        gathered = [:]
        lastRelease = .zero
    }

    /// When the next event may go: now, or after a random lag that keeps events in order.
    mutating func eventReleaseTime(now: Duration) -> Duration {
        guard freedoms.eventLagMaxMs > 0 else { return now }
        let lag = Duration.microseconds(Int64(rng.next() % UInt64(freedoms.eventLagMaxMs * 1000 + 1)))
        lastRelease = max(lastRelease, now + lag)
        return lastRelease
    }

    mutating func queueEvent(_ bytes: [UInt8], releaseAt: Duration, releasesData: Bool) {
        events.append((releaseAt, bytes, releasesData))
    }

    /// Events due by `now`, in order; and whether a held data frame may now follow.
    mutating func dueEvents(now: Duration) -> [(bytes: [UInt8], releasesData: Bool)] {
        var out: [(bytes: [UInt8], releasesData: Bool)] = []
        while let first = events.first, first.releaseAt <= now {
            out.append((first.bytes, first.releasesData))
            events.removeFirst()
        }
        return out
    }

    var nextEventRelease: Duration? { events.first?.releaseAt }

    mutating func holdData(_ bytes: [UInt8]) { heldData = (heldData ?? []) + bytes }

    mutating func takeHeldData() -> [UInt8]? {
        defer { heldData = nil }
        return heldData
    }

    /// Garbage to put before a frame (none, most of the time).
    mutating func garbage() -> [UInt8] {
        guard freedoms.garbageBetweenFrames, rng.next() % 8 == 0 else { return [] }
        // Random bytes; now and then a false `DX` header among them.
        var junk = (0..<(1 + Int(rng.next() % 40))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        if rng.next() % 4 == 0 { junk += [0x44, 0x58, 0x01, 0x04] }
        return junk
    }

    /// Gathers bytes for one record; true when the caller must schedule a flush (the first
    /// bytes since the last one).
    mutating func gather(_ endpoint: Endpoint, _ bytes: [UInt8]) -> Bool {
        let first = gathered[endpoint] == nil
        gathered[endpoint, default: []] += bytes
        return first
    }

    mutating func takeGathered(_ endpoint: Endpoint) -> [UInt8] {
        gathered.removeValue(forKey: endpoint) ?? []
    }

    var gatheredEndpoints: [Endpoint] { Array(gathered.keys) }

    /// How long gathered bytes wait: up to 2 ms of device time.
    mutating func gatherDelay() -> Duration { .microseconds(Int64(rng.next() % 2001)) }

    /// The records `bytes` goes out as: whole, or cut at random places.
    mutating func records(_ bytes: [UInt8]) -> [[UInt8]] {
        guard freedoms.splitRecords, bytes.count > 1 else { return [bytes] }
        var out: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            // Mostly small cuts (inside a header or CRC), sometimes large ones.
            let limit = rng.next() % 4 == 0 ? 4096 : 24
            let n = min(bytes.count - i, 1 + Int(rng.next() % UInt64(limit)))
            out.append(Array(bytes[i..<(i + n)]))
            i += n
        }
        return out
    }
}
