"""Runs a simulated task's seeded episodes back to back and marks each in the recording.

The thin ROS side of ``core.sim.episode_loop.EpisodeLoop``: whoever drives the arm (the scripted
expert in demonstrations, the policy in an evaluation), this node judges each episode from the
sim's ``~/task/state`` (success latched by the simulator, or a timeout), waits ``settle_s``,
publishes the episode's events (``molmoact2_common.episode_events``: start, then success or
failure, on ``/episode/event`` for the recorder) and calls the sim's ``~/reset_episode`` (which
homes the arms, re-randomises the scene and resets the drivers and the policy) for the next one,
until ``episodes`` are done. Run it on /clock (use_sim_time:=true): every time is simulated time.

  subscribes  task_state_topic (std_msgs/String JSON), driver_status_topics (DriverStatus: an
              episode starts once every driver is ready, so bring-up never counts against it)
  publishes   event_topic (std_msgs/String JSON, qos.EPISODE_EVENT), ~/status (std_msgs/String JSON,
              latched: episode, done, requested, successes, results [{episode, seed, success,
              time_to_success_s, duration_s, reason}])
  calls       reset_service (std_srvs/Trigger)
"""

from __future__ import annotations

import json

from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.episode_events import EVENT_TOPIC
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParamSpec, declare_parameters, non_negative, positive
from ..core.sim.episode_loop import EpisodeLoop
from . import driver_watch

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name or path (its arms name the drivers)"),
    ParamSpec("task_state_topic", str, "/sim/robot/task/state", "the sim's ~/task/state"),
    ParamSpec("reset_service", str, "/sim/robot/reset_episode", "the sim's ~/reset_episode"),
    ParamSpec("event_topic", str, EVENT_TOPIC, "episode events (record it with the data)"),
    *driver_watch.PARAMS,
    ParamSpec("episodes", int, 0, "episodes to run (0 = until stopped)", non_negative, ">= 0"),
    ParamSpec("episode_timeout_s", float, 20.0, "simulated seconds before an episode counts as failed", positive, "> 0"),
    ParamSpec("settle_s", float, 0.5, "simulated seconds recorded after an episode's end, before the reset", non_negative, ">= 0"),
]

class EpisodeSupervisorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("episode_supervisor", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        emb = load_embodiment(self.p["embodiment"])
        self.loop = EpisodeLoop(self.p["episodes"], self.p["episode_timeout_s"], self.p["settle_s"])
        self.drivers = driver_watch.DriverWatch(self, self.p, [a.name for a in emb.arms], len(emb.arms))
        self.event_pub = self.create_publisher(String, self.p["event_topic"], qos.EPISODE_EVENT)
        self.status_pub = self.create_publisher(String, "~/status", qos.LATCHED)
        self.reset_client = self.create_client(Trigger, self.p["reset_service"])
        self.resetting = False  # a reset call is in flight
        self.reset_pending = False  # a reset is due (retried until the service answers)
        self.create_subscription(String, self.p["task_state_topic"], self._on_state, qos.LATCHED)
        self._publish_status()
        self.get_logger().info(f"{self.p['episodes'] or 'unlimited'} episodes, {self.p['episode_timeout_s']:g} s each at most, "
                               f"drivers {', '.join(self.drivers.topics)}")

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self.loop.status())))

    def _on_state(self, msg: String) -> None:
        try:
            state = json.loads(msg.data)
        except json.JSONDecodeError as exc:
            self.get_logger().error(f"{self.p['task_state_topic']}: not JSON: {exc}", throttle_duration_sec=5.0)
            return
        if self.resetting:
            return
        actions = self.loop.update(state, self.get_clock().now().nanoseconds * 1e-9, self.drivers.ready())
        for ev in actions.events:
            self.event_pub.publish(String(data=json.dumps(ev)))
            if ev["event"] != "start":
                r = self.loop.results[-1]
                self.get_logger().info(f"episode {r.episode} (seed {r.seed}): {'success' if r.success else 'FAILED'}"
                                       f"{f' in {r.time_to_success_s:.2f} s' if r.success else f': {r.reason}'}")
        if actions.events or actions.done:
            self._publish_status()
        if actions.done:
            self.get_logger().info(f"done: {self.loop.status()['successes']}/{len(self.loop.results)} episodes succeeded")
        self.reset_pending |= actions.reset
        if self.reset_pending:
            self._reset()

    def _reset(self) -> None:
        if not self.reset_client.service_is_ready():
            self.get_logger().error(f"{self.p['reset_service']} is not available: the next episode waits for it",
                                    throttle_duration_sec=5.0)
            return
        self.resetting, self.reset_pending = True, False
        self.reset_client.call_async(Trigger.Request()).add_done_callback(self._reset_done)

    def _reset_done(self, future) -> None:
        self.resetting = False
        try:
            res = future.result()
            ok, why = res.success, res.message
        except Exception as exc:  # the sim went away
            ok, why = False, str(exc)
        if not ok:
            self.reset_pending = True  # asked again with the next task state
            self.get_logger().error(f"{self.p['reset_service']}: {why}")


def main(args=None) -> int:
    return run_node(EpisodeSupervisorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
