// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IToken {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title Pool
/// @notice A constant-product AMM pair (x * y = k, 0.3% fee) over two
/// `Token`s, for executor tests and benchmarks. Storage layout: slot 0
/// `token0`, slot 1 `token1`, slot 2 `reserve0`, slot 3 `reserve1`. Reserves
/// are seeded with `sync` after the pool holds the tokens.
contract Pool {
    IToken public token0;
    IToken public token1;
    uint256 public reserve0;
    uint256 public reserve1;

    event Swap(address indexed trader, bool zeroForOne, uint256 amountIn, uint256 amountOut);

    constructor(IToken token0_, IToken token1_) {
        token0 = token0_;
        token1 = token1_;
    }

    /// Sets the reserves (the pool must hold them).
    function sync(uint256 r0, uint256 r1) external {
        reserve0 = r0;
        reserve1 = r1;
    }

    /// The output of a swap of `amountIn` in the given direction.
    function quote(uint256 amountIn, bool zeroForOne) public view returns (uint256) {
        (uint256 rin, uint256 rout) = zeroForOne ? (reserve0, reserve1) : (reserve1, reserve0);
        uint256 inWithFee = amountIn * 997;
        return (inWithFee * rout) / (rin * 1000 + inWithFee);
    }

    /// Swaps `amountIn` of one token for at least `minOut` of the other.
    function swap(uint256 amountIn, bool zeroForOne, uint256 minOut) external returns (uint256 out) {
        out = quote(amountIn, zeroForOne);
        require(out >= minOut && out > 0, "slippage");
        (IToken tin, IToken tout) = zeroForOne ? (token0, token1) : (token1, token0);
        require(tin.transferFrom(msg.sender, address(this), amountIn), "in");
        require(tout.transfer(msg.sender, out), "out");
        if (zeroForOne) {
            reserve0 += amountIn;
            reserve1 -= out;
        } else {
            reserve1 += amountIn;
            reserve0 -= out;
        }
        emit Swap(msg.sender, zeroForOne, amountIn, out);
    }
}
