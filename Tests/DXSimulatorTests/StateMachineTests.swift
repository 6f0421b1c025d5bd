import DXProtocol
import Testing
@testable import DXSimulator

/// The DX-1's rules without a clock: each command in each state, and what follows, in order.
@Suite struct StateMachineTests {
    typealias M = DX1StateMachine
    let info = SimulatorConfiguration.standardInfo

    func idle() -> M {
        var m = M(info: info)
        _ = m.booted()
        return m
    }

    func config(_ id: UInt32 = 7, mode: ScanMode = .dual) -> ScanConfiguration {
        ScanConfiguration(scanID: id, mode: mode, xUm: 200_000, yStartUm: 500_000, lineCount: 10, lineStepUm: 1000, linePeriodUs: 10_000,
                          tubeCurrentUA: 1000, linesPerFrame: 2)
    }

    func scanning() -> M {
        var m = idle()
        _ = m.handle(.configureScan(config()))
        _ = m.handle(.startScan(scanID: 7))
        return m
    }

    @Test func bootingRefusesMotionAndEndsIdleOrSafe() {
        var m = M(info: info)
        #expect(m.state == .boot && m.handle(.home).status == .busy)
        #expect(m.booted() == [.event(.stateChanged(old: .boot, new: .idle))])
        var safe = M(info: info)
        _ = safe.interlock(.roomDoorClosed, closed: false)
        #expect(safe.booted() == [.event(.stateChanged(old: .boot, new: .safe))])
    }

    @Test func aMoveRunsAtTheICDsSpeedsAndEndsWithMotionDone() {
        var m = idle()
        let d = m.handle(.move(xUm: 100_000, yUm: 250_000, armAngle: 900))
        // 250 mm at 50 mm/s is the longest axis: 5 s; 90° in 5 s too.
        #expect(d.status == .ok && d.effects == [.event(.stateChanged(old: .idle, new: .moving)),
                                                  .startMotion(to: .init(xUm: 100_000, yUm: 250_000, armX10: 900), seconds: 5)])
        #expect(m.handle(.selfTest).status == .busy)
        #expect(m.handle(.move(xUm: 0, yUm: 0, armAngle: 0)).status == .busy)
        let done = m.motionFinished(at: .init(xUm: 100_000, yUm: 250_000, armX10: 900))
        #expect(done == [.event(.motionDone(xUm: 100_000, yUm: 250_000, armAngle: 900)), .event(.stateChanged(old: .moving, new: .idle))])
        #expect(m.handle(.move(xUm: 0, yUm: 0, armAngle: 901)).status == .badParams)
        #expect(m.handle(.move(xUm: -1, yUm: 0, armAngle: 0)).status == .badParams)
    }

    @Test func aScanTurnsXRaysOnAndItsEndTurnsThemOff() {
        var m = idle()
        #expect(m.handle(.startScan(scanID: 7)).status == .badState)
        #expect(m.handle(.configureScan(config())).effects == [.event(.stateChanged(old: .idle, new: .ready))])
        #expect(m.handle(.startScan(scanID: 8)).status == .badParams)
        let start = m.handle(.startScan(scanID: 7))
        #expect(start.effects == [.event(.stateChanged(old: .ready, new: .scanning)), .xray(on: true, scanID: 7), .startScan(config())])
        #expect(start.afterResponse == [.announceScanStarted(7)])
        #expect(m.xrayOn && m.handle(.configureScan(config(9))).status == .busy)
        let end = m.scanFinished(lines: 10, exposureMs: 100, dapX1000: 7)
        #expect(end == [.xray(on: false, scanID: 7), .log("scan 7 complete: 10 lines, 100 ms"),
                        .event(.scanComplete(scanID: 7, lines: 10, exposureMs: 100, dapX1000: 7)), .event(.stateChanged(old: .scanning, new: .idle))])
        #expect(!m.xrayOn && m.activeScan == nil)
    }

    @Test func aDarkScanNeverTurnsXRaysOn() {
        var m = idle()
        _ = m.handle(.configureScan(config(mode: .dark)))
        #expect(!m.handle(.startScan(scanID: 7)).effects.contains(.xray(on: true, scanID: 7)))
        #expect(!m.xrayOn)
    }

    /// Every way a scan can end early turns X-rays off before anything else is said.
    @Test func everyEarlyEndTurnsXRaysOffFirst() {
        var host = scanning()
        let abort = host.handle(.abortScan(scanID: 7))
        #expect(abort.effects.first == .xray(on: false, scanID: 7) && abort.effects.contains(.announceScanAborted(7, .host)))
        var off = scanning()
        #expect(off.handle(.xrayOff).effects.first == .xray(on: false, scanID: 7))
        var door = scanning()
        let opened = door.interlock(.roomDoorClosed, closed: false)
        #expect(opened.first == .xray(on: false, scanID: 7) && opened.contains(.announceScanAborted(7, .interlock)) && door.state == .safe)
        #expect(door.handle(.startScan(scanID: 7)).status == .interlockOpen)
        var trip = scanning()
        let tripped = trip.trip(FaultCode(rawValue: 3), message: "tube overtemperature")
        #expect(tripped.first == .xray(on: false, scanID: 7) && trip.state == .fault)
        for eventFirst in [true, false] {
            var dog = scanning()
            let expired = dog.watchdogExpired(eventFirst: eventFirst)
            #expect(expired.first == .xray(on: false, scanID: 7))
            let event = expired.firstIndex(of: .event(.watchdogExpired)) ?? -1, aborted = expired.firstIndex(of: .announceScanAborted(7, .watchdog)) ?? -1
            #expect(event >= 0 && aborted >= 0 && (event < aborted) == eventFirst, "\(expired)")
        }
    }

    @Test func faultsAreClearedOnlyFromFaultAndResetOnlyWhenQuiet() {
        var m = idle()
        #expect(m.handle(.clearFault).status == .badState)
        _ = m.trip(FaultCode(rawValue: 3), message: "x")
        #expect(m.handle(.home).status == .faultActive)
        let clear = m.handle(.clearFault)
        #expect(clear.status == .ok && clear.afterResponse.contains(.event(.faultCleared(code: FaultCode(rawValue: 3)))) && m.state == .idle)
        var busy = scanning()
        #expect(busy.handle(.reset).status == .busy)
        var quiet = idle()
        #expect(quiet.handle(.reset).afterResponse.last == .reset)
        var r = scanning()
        let reboot = r.reboot()
        #expect(reboot.first == .xray(on: false, scanID: 7) && r.state == .boot && r.activeScan == nil)
    }

    @Test func abortOfAConfiguredScanReturnsToIdle() {
        var m = idle()
        _ = m.handle(.configureScan(config()))
        #expect(m.handle(.abortScan(scanID: 8)).status == .badParams)
        #expect(m.handle(.abortScan(scanID: 7)).effects == [.event(.stateChanged(old: .ready, new: .idle))])
        #expect(m.handle(.abortScan(scanID: 7)).status == .badState)
    }
}
