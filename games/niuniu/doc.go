// Package niuniu is Niu Niu (grab the banker), the sample card game of
// hearth: the rules as pure functions (no I/O, no clock, no global state),
// and, in room.go only, [NewRoomType], the tables that play them on the
// room SDK and settle into the store's ledger.
// Every rule of the game that is a default (hand multipliers, which special
// hands count, grab and bet ranges, seats, countdowns) is a field of
// [Rules], whose zero value is the standard game.
//
// A round, as a room type drives it:
//
//	rng := niuniu.NewRNG(seed)           // log the seed: it replays the round
//	hands, _ := rules.Deal(rng, players) // cards 0–3 at deal4, card 4 at deal5
//	banker, g, _ := rules.Banker(rng, grabs)
//	evals[i], _ = rules.Evaluate(hands[i])
//	deltas, _ := rules.Settle(niuniu.Table{Base: base, Banker: banker, Grab: g, Players: …})
//
// Seats are indices into the per-seat slices (0 for the first seat); only
// [RoundLog], the simulator's output, numbers them from 1.
//
// # Randomness, exactly
//
// So that another implementation can reproduce a round from its seed, the
// RNG and its use are specified here, not left to a library:
//
//   - The RNG is SplitMix64: the state starts at the seed; each draw adds
//     0x9E3779B97F4A7C15 to the state, then z = state,
//     z = (z ^ z>>30) * 0xBF58476D1CE4E5B9, z = (z ^ z>>27) * 0x94D049BB133111EB,
//     and returns z ^ z>>31 (all arithmetic modulo 2^64).
//   - IntN(n) draws x until x ≥ 2^64 mod n and returns x mod n (unbiased).
//   - The deck starts in the order AS 2S … KS AH … KH AC … KC AD … KD and is
//     shuffled by Fisher–Yates: for i from 51 down to 1, swap cards i and
//     IntN(i+1).
//   - Seat i (from 0) gets cards 5i to 5i+4 of the shuffled deck, in that
//     order; the first four are its deal4 cards, the last its deal5 card.
//   - Banker: the seats with the highest grab, in seat order; if there are
//     several, the banker is the one at index IntN(count), drawn from the
//     same RNG right after the shuffle. If everyone chose 0, every seat is a
//     candidate and the banker's multiplier is AllPassGrab (1 by default).
//     A single candidate draws nothing.
//   - The simulator ([Rules.SimRound]) draws its players' choices from the
//     same RNG at the moment they choose: after the shuffle, each seat's grab
//     in seat order as IntN(MaxGrab+1); then the banker as above; then each
//     non-banker's bet in seat order as 1+IntN(MaxBet).
//
// # Settlement
//
// For each non-banker p: amount = base × g × bet(p) × multiplier(winner's
// hand). [Rules.Settle] first collects from every player who lost to the
// banker, each paying at most their balance at the start of the round; then
// it pays the players who beat the banker in seat order (lowest seat first)
// out of the banker's starting balance plus what it just collected, each in
// full while that lasts; the first winner it cannot pay in full gets what is
// left, later winners get nothing. So nobody loses more than their starting
// balance and the deltas sum to zero.
package niuniu
